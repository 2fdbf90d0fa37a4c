//! Effects: what a write command changed, as explicit data. The master replicates
//! them (and the AOF rewrite emits them) as `MAILBOX.EFFECT <key> <op> ...`; a
//! replica or an AOF replay applies them without reading its own clock, configs or
//! current user, so it reaches exactly the master's state. Pure: no Redis types.

#![forbid(unsafe_code)]

use crate::core::codec;
use crate::core::grants::{Grant, Permission};
use crate::core::namespace::{Filter, Namespace};
use crate::core::topics::TopicPattern;
use crate::core::wire::DecodeError;
use crate::core::{DeadLetter, DeadReason, Entry, Mailbox, MessageId, Settings};

/// The command every effect travels as, to replicas and into the AOF.
pub const EFFECT_COMMAND: &std::ffi::CStr = c"MAILBOX.EFFECT";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Create the mailbox with these settings, or replace the settings of an existing one.
    Init {
        settings: Settings,
        last_id: MessageId,
    },
    /// A sent message (ready, 0 deliveries), with its dedup key and window end.
    Put {
        entry: Entry,
        dedup: Option<(Vec<u8>, u64)>,
    },
    /// A message in any state, as the AOF rewrite writes it.
    Restore(Entry),
    /// A dead letter, as the AOF rewrite writes it.
    Dead(DeadLetter),
    /// A dedup key, as the AOF rewrite writes it.
    Dedup {
        key: Vec<u8>,
        id: MessageId,
        until: u64,
    },
    Lease {
        until: u64,
        ids: Vec<MessageId>,
    },
    /// Acked, expired, or read with `NOACK`.
    Remove {
        ids: Vec<MessageId>,
    },
    Requeue {
        ids: Vec<MessageId>,
    },
    Delay {
        until: u64,
        ids: Vec<MessageId>,
    },
    Kill {
        at: u64,
        reason: DeadReason,
        ids: Vec<MessageId>,
    },
    Revive {
        ids: Vec<MessageId>,
    },
    /// `DEAD PURGE`: dead letters deleted (the wire word stays `BURY`).
    PurgeDead {
        ids: Vec<MessageId>,
    },
    ForgetDedup {
        now: u64,
    },
}

impl Effect {
    /// True when applying it to a missing key creates the mailbox.
    pub fn creates(&self) -> bool {
        matches!(self, Effect::Init { .. })
    }

    /// The arguments after `MAILBOX.EFFECT <key>`.
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        let mut args = Vec::new();
        self.each_arg(|arg| args.push(arg.to_vec()));
        args
    }

    /// Gives the arguments after `MAILBOX.EFFECT <key>` to `emit`, one by one, in
    /// order: numbers and ids are written on the stack, blobs encoded once.
    pub fn each_arg(&self, mut emit: impl FnMut(&[u8])) {
        let num = |emit: &mut dyn FnMut(&[u8]), n: u64| emit(crate::core::id::decimal(n, &mut [0; 20]));
        // `<op> <numbers...> <ids...>`: most effects.
        let with_ids = |emit: &mut dyn FnMut(&[u8]), op: &[u8], numbers: &[u64], ids: &[MessageId]| {
            emit(op);
            for n in numbers {
                num(emit, *n);
            }
            for id in ids {
                emit(id.text(&mut [0; 41]));
            }
        };
        match self {
            Effect::Init { settings, last_id } => {
                let mut blob = Vec::new();
                codec::encode_settings(settings, &mut blob);
                emit(b"INIT");
                emit(&blob);
                emit(last_id.text(&mut [0; 41]));
            }
            Effect::Put { entry, dedup } => {
                let mut blob = Vec::new();
                codec::encode_entry(entry, &mut blob);
                emit(b"PUT");
                emit(&blob);
                if let Some((key, until)) = dedup {
                    emit(key);
                    num(&mut emit, *until);
                }
            }
            Effect::Restore(entry) => {
                let mut blob = Vec::new();
                codec::encode_entry(entry, &mut blob);
                emit(b"RESTORE");
                emit(&blob);
            }
            Effect::Dead(dead) => {
                let mut blob = Vec::new();
                codec::encode_dead(dead, &mut blob);
                emit(b"DEAD");
                emit(&blob);
            }
            Effect::Dedup { key, id, until } => {
                emit(b"DEDUP");
                emit(key);
                emit(id.text(&mut [0; 41]));
                num(&mut emit, *until);
            }
            Effect::Lease { until, ids } => with_ids(&mut emit, b"LEASE", &[*until], ids),
            Effect::Remove { ids } => with_ids(&mut emit, b"REMOVE", &[], ids),
            Effect::Requeue { ids } => with_ids(&mut emit, b"REQUEUE", &[], ids),
            Effect::Delay { until, ids } => with_ids(&mut emit, b"DELAY", &[*until], ids),
            Effect::Kill { at, reason, ids } => {
                with_ids(&mut emit, b"KILL", &[*at, u64::from(reason.code())], ids)
            }
            Effect::Revive { ids } => with_ids(&mut emit, b"REVIVE", &[], ids),
            Effect::PurgeDead { ids } => with_ids(&mut emit, b"BURY", &[], ids),
            Effect::ForgetDedup { now } => {
                emit(b"FORGETDEDUP");
                num(&mut emit, *now);
            }
        }
    }

    /// Parses the arguments after `MAILBOX.EFFECT <key>`.
    pub fn parse(args: &[&[u8]]) -> Result<Effect, DecodeError> {
        let bad = DecodeError("malformed effect");
        let (op, rest) = args.split_first().ok_or(bad.clone())?;
        let num = parse_num;
        let ids = |a: &[&[u8]]| -> Result<Vec<MessageId>, DecodeError> {
            a.iter().map(|s| MessageId::parse(s).ok_or(DecodeError("malformed id in effect"))).collect()
        };
        let effect = match (*op, rest) {
            (b"INIT", [blob, last]) => Effect::Init {
                settings: codec::decode_settings(blob)?,
                last_id: MessageId::parse(last).ok_or(bad)?,
            },
            (b"PUT", [blob]) => Effect::Put { entry: codec::decode_entry(blob)?, dedup: None },
            (b"PUT", [blob, key, until]) => {
                Effect::Put { entry: codec::decode_entry(blob)?, dedup: Some((key.to_vec(), num(until)?)) }
            }
            (b"RESTORE", [blob]) => Effect::Restore(codec::decode_entry(blob)?),
            (b"DEAD", [blob]) => Effect::Dead(codec::decode_dead(blob)?),
            (b"DEDUP", [key, id, until]) => {
                Effect::Dedup { key: key.to_vec(), id: MessageId::parse(id).ok_or(bad)?, until: num(until)? }
            }
            (b"LEASE", [until, rest @ ..]) => Effect::Lease { until: num(until)?, ids: ids(rest)? },
            (b"REMOVE", rest) => Effect::Remove { ids: ids(rest)? },
            (b"REQUEUE", rest) => Effect::Requeue { ids: ids(rest)? },
            (b"DELAY", [until, rest @ ..]) => Effect::Delay { until: num(until)?, ids: ids(rest)? },
            (b"KILL", [at, reason, rest @ ..]) => Effect::Kill {
                at: num(at)?,
                reason: u8::try_from(num(reason)?)
                    .ok()
                    .and_then(DeadReason::from_code)
                    .ok_or(DecodeError("unknown dead-letter reason"))?,
                ids: ids(rest)?,
            },
            (b"REVIVE", rest) => Effect::Revive { ids: ids(rest)? },
            (b"BURY", rest) => Effect::PurgeDead { ids: ids(rest)? },
            (b"FORGETDEDUP", [now]) => Effect::ForgetDedup { now: num(now)? },
            _ => return Err(bad),
        };
        Ok(effect)
    }

    /// Applies it to an existing mailbox.
    pub fn apply(self, mailbox: &mut Mailbox) {
        match self {
            Effect::Init { settings, last_id } => {
                mailbox.settings = settings;
                mailbox.last_id = mailbox.last_id.max(last_id);
            }
            Effect::Put { entry, dedup } => {
                mailbox.push(entry.env, dedup);
            }
            Effect::Restore(entry) => {
                mailbox.restore_entry(entry);
            }
            Effect::Dead(dead) => {
                mailbox.restore_dead(dead);
            }
            Effect::Dedup { key, id, until } => mailbox.restore_dedup(key, id, until),
            Effect::Lease { until, ids } => {
                mailbox.lease(&ids, until);
            }
            Effect::Remove { ids } => {
                mailbox.remove(&ids);
            }
            Effect::Requeue { ids } => {
                mailbox.requeue(&ids);
            }
            Effect::Delay { until, ids } => {
                mailbox.delay(&ids, until);
            }
            Effect::Kill { at, reason, ids } => {
                mailbox.kill(&ids, reason, at);
            }
            Effect::Revive { ids } => {
                mailbox.revive(&ids);
            }
            Effect::PurgeDead { ids } => {
                mailbox.purge_dead(&ids);
            }
            Effect::ForgetDedup { now } => {
                mailbox.expire_dedup(now);
            }
        }
    }
}

/// Effects on a namespace key (`MAILBOX.EFFECT <ns-key> NS.<op> ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsEffect {
    /// Create the namespace if it is missing.
    Init,
    AddMailbox(Vec<u8>),
    /// A mailbox that is gone: forget it and its subscriptions.
    DropMailbox(Vec<u8>),
    Subscribe {
        mailbox: Vec<u8>,
        patterns: Vec<TopicPattern>,
    },
    /// Subscriptions with a filter (`NS.SUBF mailbox from minpriority type pattern...`,
    /// empty strings for the parts not set).
    SubscribeFiltered {
        mailbox: Vec<u8>,
        filter: Filter,
        patterns: Vec<TopicPattern>,
    },
    Unsubscribe {
        mailbox: Vec<u8>,
        patterns: Vec<TopicPattern>,
    },
    Seen {
        agent: Vec<u8>,
        at: u64,
    },
    Grant(Grant),
    Revoke(Grant),
    /// Sets (`Some((rate, burst))`) or clears an agent's send quota override.
    Quota {
        agent: Vec<u8>,
        quota: Option<(u64, u64)>,
    },
    /// The message count of a thread (the loop breaker's counter).
    ThreadCount {
        thread: Vec<u8>,
        count: u64,
    },
}

impl NsEffect {
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        let with_patterns = |op: &str, mailbox: &[u8], patterns: &[TopicPattern]| {
            let mut args = vec![op.as_bytes().to_vec(), mailbox.to_vec()];
            args.extend(patterns.iter().map(|p| p.as_bytes().to_vec()));
            args
        };
        match self {
            NsEffect::Init => vec![b"NS.INIT".to_vec()],
            NsEffect::AddMailbox(m) => vec![b"NS.ADD".to_vec(), m.clone()],
            NsEffect::DropMailbox(m) => vec![b"NS.DROP".to_vec(), m.clone()],
            NsEffect::Subscribe { mailbox, patterns } => with_patterns("NS.SUB", mailbox, patterns),
            NsEffect::SubscribeFiltered { mailbox, filter, patterns } => {
                let mut args = vec![
                    b"NS.SUBF".to_vec(),
                    mailbox.clone(),
                    filter.from.clone().unwrap_or_default(),
                    filter.min_priority.map(|p| p.to_string().into_bytes()).unwrap_or_default(),
                    filter.content_type.clone().unwrap_or_default(),
                ];
                args.extend(patterns.iter().map(|p| p.as_bytes().to_vec()));
                args
            }
            NsEffect::Unsubscribe { mailbox, patterns } => with_patterns("NS.UNSUB", mailbox, patterns),
            NsEffect::Seen { agent, at } => {
                vec![b"NS.SEEN".to_vec(), agent.clone(), at.to_string().into_bytes()]
            }
            NsEffect::Grant(g) | NsEffect::Revoke(g) => vec![
                if matches!(self, NsEffect::Grant(_)) { b"NS.GRANT".to_vec() } else { b"NS.REVOKE".to_vec() },
                g.agent.clone(),
                g.permission.as_str().as_bytes().to_vec(),
                g.pattern.clone(),
            ],
            NsEffect::Quota { agent, quota: Some((rate, burst)) } => vec![
                b"NS.QUOTA".to_vec(),
                agent.clone(),
                rate.to_string().into_bytes(),
                burst.to_string().into_bytes(),
            ],
            NsEffect::Quota { agent, quota: None } => vec![b"NS.QUOTA".to_vec(), agent.clone()],
            NsEffect::ThreadCount { thread, count } => {
                vec![b"NS.THREAD".to_vec(), thread.clone(), count.to_string().into_bytes()]
            }
        }
    }

    pub fn parse(args: &[&[u8]]) -> Result<NsEffect, DecodeError> {
        let bad = DecodeError("malformed namespace effect");
        let patterns = |a: &[&[u8]]| -> Result<Vec<TopicPattern>, DecodeError> {
            a.iter()
                .map(|p| TopicPattern::parse(p).map_err(|_| DecodeError("bad pattern in effect")))
                .collect()
        };
        let (op, rest) = args.split_first().ok_or(bad.clone())?;
        Ok(match (*op, rest) {
            (b"NS.INIT", []) => NsEffect::Init,
            (b"NS.ADD", [m]) => NsEffect::AddMailbox(m.to_vec()),
            (b"NS.DROP", [m]) => NsEffect::DropMailbox(m.to_vec()),
            (b"NS.SUB", [m, ps @ ..]) => NsEffect::Subscribe { mailbox: m.to_vec(), patterns: patterns(ps)? },
            (b"NS.UNSUB", [m, ps @ ..]) => {
                NsEffect::Unsubscribe { mailbox: m.to_vec(), patterns: patterns(ps)? }
            }
            (b"NS.SUBF", [m, from, prio, ct, ps @ ..]) => NsEffect::SubscribeFiltered {
                mailbox: m.to_vec(),
                filter: Filter {
                    from: (!from.is_empty()).then(|| from.to_vec()),
                    min_priority: if prio.is_empty() {
                        None
                    } else {
                        Some(
                            u8::try_from(parse_num(prio)?)
                                .map_err(|_| DecodeError("bad priority in effect"))?,
                        )
                    },
                    content_type: (!ct.is_empty()).then(|| ct.to_vec()),
                },
                patterns: patterns(ps)?,
            },
            (b"NS.SEEN", [agent, at]) => NsEffect::Seen { agent: agent.to_vec(), at: parse_num(at)? },
            (b"NS.GRANT" | b"NS.REVOKE", [agent, permission, pattern]) => {
                let grant = Grant {
                    agent: agent.to_vec(),
                    permission: Permission::parse(permission).ok_or(DecodeError("unknown permission"))?,
                    pattern: pattern.to_vec(),
                };
                if *op == b"NS.GRANT" {
                    NsEffect::Grant(grant)
                } else {
                    NsEffect::Revoke(grant)
                }
            }
            (b"NS.QUOTA", [agent]) => NsEffect::Quota { agent: agent.to_vec(), quota: None },
            (b"NS.QUOTA", [agent, rate, burst]) => {
                NsEffect::Quota { agent: agent.to_vec(), quota: Some((parse_num(rate)?, parse_num(burst)?)) }
            }
            (b"NS.THREAD", [thread, count]) => {
                NsEffect::ThreadCount { thread: thread.to_vec(), count: parse_num(count)? }
            }
            _ => return Err(bad),
        })
    }

    pub fn apply(self, ns: &mut Namespace) {
        match self {
            NsEffect::Init => {}
            NsEffect::AddMailbox(m) => {
                ns.add_mailbox(&m);
            }
            NsEffect::DropMailbox(m) => {
                ns.remove_mailbox(&m);
            }
            NsEffect::Subscribe { mailbox, patterns } => {
                for p in patterns {
                    ns.subscribe(&mailbox, p);
                }
            }
            NsEffect::SubscribeFiltered { mailbox, filter, patterns } => {
                for p in patterns {
                    ns.subscribe_filtered(&mailbox, p, filter.clone());
                }
            }
            NsEffect::Unsubscribe { mailbox, patterns } => {
                for p in &patterns {
                    ns.unsubscribe(&mailbox, p);
                }
            }
            NsEffect::Seen { agent, at } => {
                ns.seen(&agent, at);
            }
            NsEffect::Grant(g) => {
                ns.grant(g);
            }
            NsEffect::Revoke(g) => {
                ns.revoke(&g);
            }
            NsEffect::Quota { agent, quota } => {
                ns.set_quota(&agent, quota);
            }
            NsEffect::ThreadCount { thread, count } => ns.set_thread_count(&thread, count),
        }
    }
}

/// One message delivered to several mailboxes of a namespace (a publish or a
/// broadcast): `MAILBOX.EFFECT <ns-key> DELIVER <entry> <dedup-key or ""> <mailbox>...`.
/// Each receiver remembers the dedup key for its own window from the message's
/// timestamp. Replayed with one shared envelope, so a replica shares the payload too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub entry: Entry,
    pub dedup: Option<Vec<u8>>,
    pub receivers: Vec<Vec<u8>>,
}

impl Delivery {
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        let mut args = Vec::new();
        self.each_arg(|arg| args.push(arg.to_vec()));
        args
    }

    /// Gives the arguments after `MAILBOX.EFFECT <key>` to `emit`, one by one, as
    /// `Effect::each_arg` does: a publish to many names copies none of them.
    pub fn each_arg(&self, mut emit: impl FnMut(&[u8])) {
        let mut blob = Vec::new();
        codec::encode_entry(&self.entry, &mut blob);
        emit(b"DELIVER");
        emit(&blob);
        emit(self.dedup.as_deref().unwrap_or_default());
        for receiver in &self.receivers {
            emit(receiver);
        }
    }

    pub fn parse(args: &[&[u8]]) -> Result<Delivery, DecodeError> {
        match args {
            [op, blob, key, receivers @ ..] if *op == b"DELIVER" => Ok(Delivery {
                entry: codec::decode_entry(blob)?,
                dedup: (!key.is_empty()).then(|| key.to_vec()),
                receivers: receivers.iter().map(|r| r.to_vec()).collect(),
            }),
            _ => Err(DecodeError("malformed delivery effect")),
        }
    }
}

/// The dedup entry a mailbox keeps for a message sent at `ts`, by its own window.
pub fn dedup_for(mailbox: &Mailbox, key: Option<Vec<u8>>, ts: u64) -> Option<(Vec<u8>, u64)> {
    let window = mailbox.settings.dedup_window_ms;
    key.filter(|_| window > 0).map(|k| (k, ts.saturating_add(window)))
}

/// Any `MAILBOX.EFFECT`, by its operation name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyEffect {
    Mailbox(Effect),
    Namespace(NsEffect),
    Deliver(Delivery),
}

pub fn parse_any(args: &[&[u8]]) -> Result<AnyEffect, DecodeError> {
    match args.first() {
        Some(op) if op.starts_with(b"NS.") => NsEffect::parse(args).map(AnyEffect::Namespace),
        Some(op) if *op == b"DELIVER" => Delivery::parse(args).map(AnyEffect::Deliver),
        _ => Effect::parse(args).map(AnyEffect::Mailbox),
    }
}

fn parse_num(a: &[u8]) -> Result<u64, DecodeError> {
    std::str::from_utf8(a)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or(DecodeError("malformed number in effect"))
}

/// The effects that rebuild `mailbox` from nothing (the AOF rewrite).
pub fn rebuild(mailbox: &Mailbox) -> impl Iterator<Item = Effect> + '_ {
    let init = Effect::Init { settings: mailbox.settings, last_id: mailbox.last_id };
    std::iter::once(init)
        .chain(mailbox.entries().map(|e| Effect::Restore(e.clone())))
        .chain(mailbox.dead_letters().map(|d| Effect::Dead(d.clone())))
        .chain(mailbox.dedup_entries().map(|(key, id, until)| Effect::Dedup { key: key.to_vec(), id, until }))
}

#[cfg(test)]
mod tests {
    use crate::core::Overflow;

    use super::*;
    use crate::core::Envelope;
    use crate::core::Parts;

    fn entry(ms: u64) -> Entry {
        Entry::ready(Envelope::new(Parts {
            id: MessageId::new(ms, 0),
            from: b"alice",
            to: b"bob",
            ts: ms,
            priority: 3,
            expires_at: None,
            content_type: Some(&b"text/plain"[..]),
            payload: b"hi",
            meta: None,
            thread: Some(&b"t"[..]),
            correlation: None,
            reply_to: None,
            via: None,
            confirm: false,
        }))
    }

    #[test]
    fn every_effect_round_trips_through_args() {
        let settings = Settings {
            maxlen: 5,
            ttl_ms: 0,
            lease_ms: 100,
            max_deliveries: 3,
            dedup_window_ms: 10,
            overflow: Overflow::Refuse,
        };
        let ids = vec![MessageId::new(1, 0), MessageId::new(2, 5)];
        let all = vec![
            Effect::Init { settings, last_id: MessageId::new(9, 9) },
            Effect::Put { entry: entry(1), dedup: None },
            Effect::Put { entry: entry(2), dedup: Some((b"k".to_vec(), 99)) },
            Effect::Restore(entry(3)),
            Effect::Dedup { key: b"k".to_vec(), id: MessageId::new(2, 0), until: 7 },
            Effect::Lease { until: 50, ids: ids.clone() },
            Effect::Remove { ids: ids.clone() },
            Effect::Requeue { ids: ids.clone() },
            Effect::Delay { until: 8, ids: ids.clone() },
            Effect::Kill { at: 4, reason: DeadReason::MaxDeliveries, ids: ids.clone() },
            Effect::Revive { ids: ids.clone() },
            Effect::PurgeDead { ids },
            Effect::ForgetDedup { now: 12 },
        ];
        for effect in all {
            let args = effect.to_args();
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            assert_eq!(Effect::parse(&refs).unwrap(), effect);
        }
    }

    #[test]
    fn namespace_effects_and_deliveries_round_trip() {
        let p = |s: &str| TopicPattern::parse(s.as_bytes()).unwrap();
        for effect in [
            NsEffect::Init,
            NsEffect::AddMailbox(b"{t}a".to_vec()),
            NsEffect::DropMailbox(b"{t}a".to_vec()),
            NsEffect::Subscribe { mailbox: b"{t}a".to_vec(), patterns: vec![p("x.*"), p("#")] },
            NsEffect::Unsubscribe { mailbox: b"{t}a".to_vec(), patterns: vec![p("x.*")] },
            NsEffect::Seen { agent: b"alice".to_vec(), at: 77 },
            NsEffect::Grant(Grant {
                agent: b"a".to_vec(),
                permission: Permission::Read,
                pattern: b"{t}*".to_vec(),
            }),
            NsEffect::Revoke(Grant {
                agent: b"*".to_vec(),
                permission: Permission::Admin,
                pattern: b"x".to_vec(),
            }),
            NsEffect::Quota { agent: b"a".to_vec(), quota: Some((5, 10)) },
            NsEffect::Quota { agent: b"a".to_vec(), quota: None },
            NsEffect::ThreadCount { thread: b"t1".to_vec(), count: 12 },
            NsEffect::SubscribeFiltered {
                mailbox: b"{t}a".to_vec(),
                filter: Filter { from: Some(b"bot*".to_vec()), min_priority: Some(3), content_type: None },
                patterns: vec![p("x.#")],
            },
        ] {
            let args = effect.to_args();
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            assert_eq!(parse_any(&refs).unwrap(), AnyEffect::Namespace(effect));
        }
        for dedup in [None, Some(b"k".to_vec())] {
            let d = Delivery { entry: entry(4), dedup, receivers: vec![b"{t}a".to_vec(), b"{t}b".to_vec()] };
            let args = d.to_args();
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            assert_eq!(parse_any(&refs).unwrap(), AnyEffect::Deliver(d));
        }
        assert!(parse_any(&[b"NS.SUB", b"m", b"a..b"]).is_err());
        assert!(parse_any(&[b"DELIVER", b"x"]).is_err());
    }

    #[test]
    fn malformed_effects_are_refused() {
        for bad in [
            vec![&b"NOPE"[..]],
            vec![],
            vec![b"LEASE"],
            vec![b"LEASE", b"x", b"1-0"],
            vec![b"REMOVE", b"1"],
            vec![b"KILL", b"1", b"77", b"1-0"],
            vec![b"PUT", b"\x01"],
            vec![b"INIT", b"\x01", b"1-0"],
        ] {
            assert!(Effect::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
