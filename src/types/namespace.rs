//! The `mailboxns` data type: one key per namespace (`mailbox:ns:{tag}`, or
//! `mailbox:ns` for names without a hash tag), holding the namespace's mailbox
//! list, topic subscriptions and presence. The topic index inside is rebuilt on load.

#![forbid(unsafe_code)]

use crate::core::grants::{Grant, Permission};
use crate::core::namespace::{Filter, Namespace};
use crate::core::topics::TopicPattern;
use crate::effects::NsEffect;
use crate::types::rdb::{DigestOut, RdbIn, RdbOut};

/// 1: mailboxes, subscriptions, presence. 2: adds grants, quota overrides and
/// thread counts. 3: adds subscription filters.
pub const ENCODING_VERSION: i32 = 3;

/// Version 3: mailbox count and names; subscription count and (mailbox, pattern);
/// presence count and (agent, last seen); grant count and (agent, permission
/// code, pattern); quota count and (agent, rate, burst); thread count and
/// (thread, messages); filter count and (mailbox, pattern, from glob or empty,
/// minimum priority + 1 or 0, type glob or empty). Version 1 ends after presence,
/// version 2 after the thread counts.
pub fn save(ns: &Namespace, out: &mut impl RdbOut) {
    let mailboxes: Vec<&[u8]> = ns.mailboxes().collect();
    out.unsigned(mailboxes.len() as u64);
    for m in mailboxes {
        out.buffer(m);
    }
    out.unsigned(ns.subscription_count() as u64);
    for (m, p) in ns.subscriptions() {
        out.buffer(m);
        out.buffer(p.as_bytes());
    }
    let presence: Vec<(&[u8], u64)> = ns.presence().collect();
    out.unsigned(presence.len() as u64);
    for (agent, at) in presence {
        out.buffer(agent);
        out.unsigned(at);
    }
    let grants: Vec<&Grant> = ns.grants().collect();
    out.unsigned(grants.len() as u64);
    for g in grants {
        out.buffer(&g.agent);
        out.unsigned(u64::from(g.permission.code()));
        out.buffer(&g.pattern);
    }
    let quotas: Vec<(&[u8], (u64, u64))> = ns.quotas().collect();
    out.unsigned(quotas.len() as u64);
    for (agent, (rate, burst)) in quotas {
        out.buffer(agent);
        out.unsigned(rate);
        out.unsigned(burst);
    }
    let threads: Vec<(&[u8], u64)> = ns.thread_counts().collect();
    out.unsigned(threads.len() as u64);
    for (thread, n) in threads {
        out.buffer(thread);
        out.unsigned(n);
    }
    let filters: Vec<_> = ns.filters().collect();
    out.unsigned(filters.len() as u64);
    for (mailbox, pattern, filter) in filters {
        out.buffer(mailbox);
        out.buffer(pattern.as_bytes());
        out.buffer(filter.from.as_deref().unwrap_or_default());
        out.unsigned(filter.min_priority.map_or(0, |p| u64::from(p) + 1));
        out.buffer(filter.content_type.as_deref().unwrap_or_default());
    }
}

pub fn load(input: &mut impl RdbIn, encver: i32) -> Option<Namespace> {
    if !(1..=ENCODING_VERSION).contains(&encver) {
        return None;
    }
    let mut ns = Namespace::new();
    for _ in 0..input.unsigned()? {
        ns.add_mailbox(&input.buffer()?);
    }
    for _ in 0..input.unsigned()? {
        let mailbox = input.buffer()?;
        let pattern = TopicPattern::parse(&input.buffer()?).ok()?;
        ns.subscribe(&mailbox, pattern);
    }
    for _ in 0..input.unsigned()? {
        let agent = input.buffer()?;
        ns.seen(&agent, input.unsigned()?);
    }
    if encver >= 2 {
        for _ in 0..input.unsigned()? {
            let agent = input.buffer()?;
            let permission = Permission::from_code(u8::try_from(input.unsigned()?).ok()?)?;
            let pattern = input.buffer()?;
            ns.grant(Grant { agent, permission, pattern });
        }
        for _ in 0..input.unsigned()? {
            let agent = input.buffer()?;
            let quota = (input.unsigned()?, input.unsigned()?);
            ns.set_quota(&agent, Some(quota));
            crate::quota::overrides_exist();
        }
        for _ in 0..input.unsigned()? {
            let thread = input.buffer()?;
            ns.set_thread_count(&thread, input.unsigned()?);
        }
    }
    if encver >= 3 {
        for _ in 0..input.unsigned()? {
            let mailbox = input.buffer()?;
            let pattern = TopicPattern::parse(&input.buffer()?).ok()?;
            let from = input.buffer()?;
            let min_priority = match input.unsigned()? {
                0 => None,
                p @ 1..=10 => Some(p as u8 - 1),
                _ => return None,
            };
            let content_type = input.buffer()?;
            let filter = Filter {
                from: (!from.is_empty()).then_some(from),
                min_priority,
                content_type: (!content_type.is_empty()).then_some(content_type),
            };
            ns.subscribe_filtered(&mailbox, pattern, filter);
        }
    }
    Some(ns)
}

pub fn digest_parts(ns: &Namespace, add: impl FnMut(&[u8])) {
    save(ns, &mut DigestOut(add));
}

/// The effects that rebuild a namespace from nothing (the AOF rewrite).
pub fn rewrite(ns: &Namespace) -> Vec<NsEffect> {
    let mut effects = vec![NsEffect::Init];
    effects.extend(ns.mailboxes().map(|m| NsEffect::AddMailbox(m.to_vec())));
    effects.extend(
        ns.subscriptions()
            .map(|(m, p)| NsEffect::Subscribe { mailbox: m.to_vec(), patterns: vec![p.clone()] }),
    );
    effects.extend(ns.presence().map(|(a, at)| NsEffect::Seen { agent: a.to_vec(), at }));
    effects.extend(ns.grants().map(|g| NsEffect::Grant(g.clone())));
    effects.extend(ns.quotas().map(|(a, q)| NsEffect::Quota { agent: a.to_vec(), quota: Some(q) }));
    effects.extend(ns.thread_counts().map(|(t, n)| NsEffect::ThreadCount { thread: t.to_vec(), count: n }));
    effects.extend(ns.filters().map(|(m, p, f)| NsEffect::SubscribeFiltered {
        mailbox: m.to_vec(),
        filter: f.clone(),
        patterns: vec![p.clone()],
    }));
    effects
}
