//! A namespace: the mailboxes that share a hash tag, their topic subscriptions and
//! the presence of the agents that use them. Held in one key per namespace, in the
//! namespace's slot, so a publish or a broadcast touches one slot.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use super::grants::{self, Grant, Permission, Policy};
use super::message::Envelope;
use super::topics::{TopicIndex, TopicPattern};

/// What a subscription lets through, besides its topic pattern.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Glob over the sender (`from`).
    pub from: Option<Vec<u8>>,
    pub min_priority: Option<u8>,
    /// Glob over the content type (a message without one has type "").
    pub content_type: Option<Vec<u8>>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.from.is_none() && self.min_priority.is_none() && self.content_type.is_none()
    }

    pub fn admits(&self, env: &Envelope) -> bool {
        let parts = env.parts();
        self.admits_parts(parts.from, env.priority(), parts.content_type)
    }

    pub fn admits_parts(&self, from: &[u8], priority: u8, content_type: Option<&[u8]>) -> bool {
        self.from.as_ref().is_none_or(|g| grants::glob_match(g, from))
            && self.min_priority.is_none_or(|p| priority >= p)
            && self
                .content_type
                .as_ref()
                .is_none_or(|g| grants::glob_match(g, content_type.unwrap_or_default()))
    }
}

#[derive(Clone, Default)]
pub struct Namespace {
    mailboxes: BTreeSet<Vec<u8>>,
    subscriptions: BTreeMap<Vec<u8>, BTreeMap<TopicPattern, Filter>>,
    /// Rebuilt from `subscriptions`; never saved.
    index: TopicIndex<(Vec<u8>, TopicPattern)>,
    /// Subscriptions whose filter is not empty; rebuilt with `index`, never saved.
    filtered: usize,
    presence: BTreeMap<Vec<u8>, u64>,
    grants: BTreeSet<Grant>,
    /// Per-agent send quota overrides: (tokens per second, burst).
    quotas: BTreeMap<Vec<u8>, (u64, u64)>,
    /// Messages sent so far in each thread of the namespace (the loop breaker).
    thread_counts: BTreeMap<Vec<u8>, u64>,
    /// When each thread was last counted on this server; never saved (a thread not
    /// seen since a load counts as seen when first looked at).
    thread_seen: BTreeMap<Vec<u8>, u64>,
    /// When `idle_threads` looks again; never saved.
    next_thread_look: u64,
}

impl Namespace {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_mailbox(&mut self, name: &[u8]) -> bool {
        if self.mailboxes.contains(name) {
            return false;
        }
        self.mailboxes.insert(name.to_vec())
    }

    pub fn has_mailbox(&self, name: &[u8]) -> bool {
        self.mailboxes.contains(name)
    }

    /// Forgets a mailbox and its subscriptions.
    pub fn remove_mailbox(&mut self, name: &[u8]) -> bool {
        if let Some(patterns) = self.subscriptions.remove(name) {
            for (p, filter) in &patterns {
                self.index.remove(p, &(name.to_vec(), p.clone()));
                self.filtered -= usize::from(!filter.is_empty());
            }
        }
        self.mailboxes.remove(name)
    }

    pub fn mailboxes(&self) -> impl Iterator<Item = &[u8]> {
        self.mailboxes.iter().map(Vec::as_slice)
    }

    pub fn subscribe(&mut self, mailbox: &[u8], pattern: TopicPattern) -> bool {
        self.subscribe_filtered(mailbox, pattern, Filter::default())
    }

    /// Adds a subscription, or changes the filter of an existing one; false when it
    /// was already there with this filter.
    pub fn subscribe_filtered(&mut self, mailbox: &[u8], pattern: TopicPattern, filter: Filter) -> bool {
        self.add_mailbox(mailbox);
        let subs = self.subscriptions.entry(mailbox.to_vec()).or_default();
        let counted = usize::from(!filter.is_empty());
        match subs.get(&pattern) {
            Some(existing) if *existing == filter => false,
            Some(existing) => {
                self.filtered = self.filtered - usize::from(!existing.is_empty()) + counted;
                subs.insert(pattern, filter);
                true
            }
            None => {
                self.index.insert(&pattern, (mailbox.to_vec(), pattern.clone()));
                self.filtered += counted;
                subs.insert(pattern, filter);
                true
            }
        }
    }

    pub fn unsubscribe(&mut self, mailbox: &[u8], pattern: &TopicPattern) -> bool {
        let Some(subs) = self.subscriptions.get_mut(mailbox) else { return false };
        let Some(filter) = subs.remove(pattern) else { return false };
        self.filtered -= usize::from(!filter.is_empty());
        if subs.is_empty() {
            self.subscriptions.remove(mailbox);
        }
        self.index.remove(pattern, &(mailbox.to_vec(), pattern.clone()))
    }

    pub fn subscriptions_of(&self, mailbox: &[u8]) -> Vec<&TopicPattern> {
        self.subscriptions.get(mailbox).map(|s| s.keys().collect()).unwrap_or_default()
    }

    pub fn filter_of(&self, mailbox: &[u8], pattern: &TopicPattern) -> Option<&Filter> {
        self.subscriptions.get(mailbox)?.get(pattern)
    }

    /// Every (mailbox, pattern) pair, in order.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&[u8], &TopicPattern)> {
        self.subscriptions.iter().flat_map(|(m, ps)| ps.keys().map(move |p| (m.as_slice(), p)))
    }

    /// Every subscription that has a filter, in order.
    pub fn filters(&self) -> impl Iterator<Item = (&[u8], &TopicPattern, &Filter)> {
        self.subscriptions
            .iter()
            .flat_map(|(m, ps)| ps.iter().map(move |(p, f)| (m.as_slice(), p, f)))
            .filter(|(_, _, f)| !f.is_empty())
    }

    pub fn subscription_count(&self) -> usize {
        self.index.len()
    }

    /// The mailboxes with a subscription matching `topic` (its path, tag removed).
    pub fn receivers(&self, topic: &[u8]) -> Vec<Vec<u8>> {
        self.receivers_admitting(topic, |_| true)
    }

    /// The mailboxes with a subscription matching `topic` whose filter admits `env`.
    pub fn receivers_for(&self, topic: &[u8], env: &Envelope) -> Vec<Vec<u8>> {
        self.receivers_admitting(topic, |f| f.admits(env))
    }

    /// The mailboxes with a subscription matching `topic` whose filter passes `admit`,
    /// in order, each once. Filters are looked up only when some subscription has one.
    pub fn receivers_admitting(&self, topic: &[u8], admit: impl Fn(&Filter) -> bool) -> Vec<Vec<u8>> {
        let any_filter = self.filtered > 0;
        let mut out: Vec<Vec<u8>> = Vec::new();
        // `matching` is ordered by mailbox, then pattern: a mailbox's pairs are adjacent.
        for (m, p) in self.index.matching(topic) {
            if out.last().is_some_and(|last| last == m) {
                continue;
            }
            if !any_filter || self.filter_of(m, p).is_none_or(&admit) {
                out.push(m.clone());
            }
        }
        out
    }

    /// Records that `agent` was active at `at`; false when it was already known at
    /// or after that moment.
    pub fn seen(&mut self, agent: &[u8], at: u64) -> bool {
        match self.presence.get_mut(agent) {
            Some(last) if *last >= at => false,
            Some(last) => {
                *last = at;
                true
            }
            None => {
                self.presence.insert(agent.to_vec(), at);
                true
            }
        }
    }

    pub fn last_seen(&self, agent: &[u8]) -> Option<u64> {
        self.presence.get(agent).copied()
    }

    pub fn presence(&self) -> impl Iterator<Item = (&[u8], u64)> {
        self.presence.iter().map(|(a, t)| (a.as_slice(), *t))
    }

    pub fn grant(&mut self, grant: Grant) -> bool {
        self.grants.insert(grant)
    }

    pub fn revoke(&mut self, grant: &Grant) -> bool {
        self.grants.remove(grant)
    }

    pub fn grants(&self) -> impl Iterator<Item = &Grant> {
        self.grants.iter()
    }

    /// Whether `agent` may use `permission` on `name` (a name of this namespace).
    pub fn allows(&self, policy: Policy, agent: &[u8], permission: Permission, name: &[u8]) -> bool {
        grants::allowed(policy, &self.grants, agent, permission, name)
    }

    /// Sets (`Some`) or clears (`None`) an agent's quota override.
    pub fn set_quota(&mut self, agent: &[u8], quota: Option<(u64, u64)>) -> bool {
        match quota {
            Some(q) => self.quotas.insert(agent.to_vec(), q) != Some(q),
            None => self.quotas.remove(agent).is_some(),
        }
    }

    pub fn quota(&self, agent: &[u8]) -> Option<(u64, u64)> {
        self.quotas.get(agent).copied()
    }

    pub fn quotas(&self) -> impl Iterator<Item = (&[u8], (u64, u64))> {
        self.quotas.iter().map(|(a, q)| (a.as_slice(), *q))
    }

    /// Messages counted in `thread` so far.
    pub fn thread_count(&self, thread: &[u8]) -> u64 {
        self.thread_counts.get(thread).copied().unwrap_or(0)
    }

    /// Counts one more message in `thread`; returns the new count.
    pub fn count_thread(&mut self, thread: &[u8]) -> u64 {
        let n = self.thread_counts.entry(thread.to_vec()).or_insert(0);
        *n += 1;
        *n
    }

    /// Sets a thread's counter; 0 forgets the thread.
    pub fn set_thread_count(&mut self, thread: &[u8], n: u64) {
        if n == 0 {
            self.thread_counts.remove(thread);
            self.thread_seen.remove(thread);
        } else {
            self.thread_counts.insert(thread.to_vec(), n);
        }
    }

    /// Notes that a message was counted in `thread` at `now`.
    pub fn thread_counted(&mut self, thread: &[u8], now: u64) {
        self.thread_seen.insert(thread.to_vec(), now);
    }

    /// The threads whose counter was last counted `idle_ms` or more before `now`: the
    /// loop breaker forgets them. Looks at most four times per `idle_ms`.
    pub fn idle_threads(&mut self, now: u64, idle_ms: u64) -> Vec<Vec<u8>> {
        if now < self.next_thread_look {
            return Vec::new();
        }
        self.next_thread_look = now.saturating_add((idle_ms / 4).max(1));
        let mut idle = Vec::new();
        for thread in self.thread_counts.keys() {
            let seen = *self.thread_seen.entry(thread.clone()).or_insert(now);
            if now.saturating_sub(seen) >= idle_ms {
                idle.push(thread.clone());
            }
        }
        idle
    }

    pub fn thread_counts(&self) -> impl Iterator<Item = (&[u8], u64)> {
        self.thread_counts.iter().map(|(t, n)| (t.as_slice(), *n))
    }

    pub fn is_empty(&self) -> bool {
        self.mailboxes.is_empty()
            && self.subscriptions.is_empty()
            && self.presence.is_empty()
            && self.grants.is_empty()
            && self.quotas.is_empty()
            && self.thread_counts.is_empty()
    }

    /// An estimate of the heap bytes owned, for `MEMORY USAGE`.
    pub fn mem_usage(&self) -> usize {
        let names: usize = self.mailboxes.iter().map(|m| m.len() + 48).sum();
        let subs: usize = self.subscriptions().map(|(m, p)| m.len() + 2 * p.as_bytes().len() + 160).sum();
        let presence: usize = self.presence.keys().map(|a| a.len() + 56).sum();
        let grants: usize = self.grants.iter().map(|g| g.agent.len() + g.pattern.len() + 80).sum();
        let quotas: usize = self.quotas.keys().map(|a| a.len() + 72).sum();
        let threads: usize = self.thread_counts.keys().map(|t| t.len() + 56).sum();
        std::mem::size_of::<Self>() + names + subs + presence + grants + quotas + threads
    }

    pub fn free_effort(&self) -> usize {
        (self.mailboxes.len()
            + self.index.len()
            + self.presence.len()
            + self.grants.len()
            + self.thread_counts.len())
        .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::message::Parts;

    fn p(s: &str) -> TopicPattern {
        TopicPattern::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn subscriptions_route_and_unroute() {
        let mut ns = Namespace::new();
        assert!(ns.subscribe(b"a", p("x.*")));
        assert!(!ns.subscribe(b"a", p("x.*")));
        assert!(ns.subscribe(b"b", p("x.#")));
        assert!(ns.has_mailbox(b"a"));
        assert_eq!(ns.receivers(b"x.y").len(), 2);
        assert_eq!(ns.receivers(b"x.y.z").into_iter().collect::<Vec<_>>(), vec![b"b".to_vec()]);
        assert!(ns.unsubscribe(b"b", &p("x.#")));
        assert!(!ns.unsubscribe(b"b", &p("x.#")));
        assert!(ns.receivers(b"x.y.z").is_empty());
        assert!(ns.remove_mailbox(b"a"));
        assert!(ns.receivers(b"x.y").is_empty());
        assert_eq!(ns.subscription_count(), 0);
    }

    #[test]
    fn filters_admit_and_reject() {
        let env = |from: &str, priority: u8, ct: Option<&str>| {
            Envelope::new(Parts {
                id: crate::core::id::MessageId::new(1, 0),
                from: from.as_bytes(),
                to: b"x.y",
                ts: 1,
                priority,
                content_type: ct.map(str::as_bytes),
                ..Parts::default()
            })
        };
        let mut ns = Namespace::new();
        ns.subscribe(b"all", p("x.*"));
        let f = Filter {
            from: Some(b"bot-*".to_vec()),
            min_priority: Some(5),
            content_type: Some(b"text/*".to_vec()),
        };
        assert!(ns.subscribe_filtered(b"picky", p("x.*"), f.clone()));
        assert!(!ns.subscribe_filtered(b"picky", p("x.*"), f.clone()));
        let names =
            |s: Vec<Vec<u8>>| s.into_iter().map(|m| String::from_utf8(m).unwrap()).collect::<Vec<_>>();
        assert_eq!(names(ns.receivers_for(b"x.y", &env("bot-1", 7, Some("text/plain")))), ["all", "picky"]);
        assert_eq!(names(ns.receivers_for(b"x.y", &env("human", 7, Some("text/plain")))), ["all"]);
        assert_eq!(names(ns.receivers_for(b"x.y", &env("bot-1", 4, Some("text/plain")))), ["all"]);
        assert_eq!(names(ns.receivers_for(b"x.y", &env("bot-1", 9, None))), ["all"]);
        // A second pattern without a filter admits what the first one rejects.
        ns.subscribe(b"picky", p("#"));
        assert_eq!(names(ns.receivers_for(b"x.y", &env("human", 0, None))), ["all", "picky"]);
        assert_eq!(ns.filters().count(), 1);
        // Changing the filter is a change.
        assert!(ns.subscribe_filtered(b"picky", p("x.*"), Filter::default()));
        assert_eq!(ns.filters().count(), 0);
    }

    #[test]
    fn filter_count_follows_every_change() {
        let picky = || Filter { min_priority: Some(5), ..Filter::default() };
        let mut ns = Namespace::new();
        let check = |ns: &Namespace| assert_eq!(ns.filtered, ns.filters().count());
        ns.subscribe_filtered(b"a", p("x.*"), picky());
        check(&ns);
        ns.subscribe_filtered(b"a", p("x.#"), picky());
        ns.subscribe(b"b", p("x.*"));
        check(&ns);
        ns.subscribe_filtered(b"b", p("x.*"), picky());
        check(&ns);
        ns.subscribe_filtered(b"a", p("x.*"), Filter::default());
        check(&ns);
        ns.unsubscribe(b"b", &p("x.*"));
        check(&ns);
        ns.remove_mailbox(b"a");
        check(&ns);
        assert_eq!(ns.filtered, 0);
    }

    #[test]
    fn a_mailbox_matched_by_several_patterns_receives_once() {
        let mut ns = Namespace::new();
        for pattern in ["x.*", "x.#", "#", "x.y"] {
            ns.subscribe(b"b", p(pattern));
        }
        ns.subscribe(b"a", p("x.y"));
        ns.subscribe(b"c", p("z"));
        assert_eq!(ns.receivers(b"x.y"), [b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn presence_only_moves_forward() {
        let mut ns = Namespace::new();
        assert!(ns.seen(b"alice", 10));
        assert!(!ns.seen(b"alice", 5));
        assert!(ns.seen(b"alice", 11));
        assert_eq!(ns.last_seen(b"alice"), Some(11));
    }
}
