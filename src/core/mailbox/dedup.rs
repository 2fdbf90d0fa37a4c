//! A mailbox's dedup window: the keys of recent sends, each with the id it stored
//! and the time it is remembered until.

#![forbid(unsafe_code)]

use super::Mailbox;
use crate::core::id::MessageId;

impl Mailbox {
    /// The first id stored under `key` if it is still inside the dedup window at `now`.
    pub fn dedup_hit(&self, key: &[u8], now: u64) -> Option<MessageId> {
        match self.dedup.get(key) {
            Some(&(id, until)) if until > now => Some(id),
            _ => None,
        }
    }

    /// A dedup entry as a load or a replicated effect gives it.
    pub fn restore_dedup(&mut self, key: Vec<u8>, id: MessageId, until: u64) {
        self.remember(key, id, until);
    }

    /// Forgets dedup keys whose window ends at or before `now`.
    pub fn expire_dedup(&mut self, now: u64) -> usize {
        let mut forgotten = 0;
        while self.dedup_order.first().is_some_and(|(until, _)| *until <= now) {
            let Some((_, key)) = self.dedup_order.pop_first() else {
                break;
            };
            self.dedup.remove(&key);
            self.dedup_key_bytes -= key.len() as u64;
            forgotten += 1;
        }
        forgotten
    }

    /// Every dedup entry as (key, id, until), ordered by (until, key).
    pub fn dedup_entries(&self) -> impl Iterator<Item = (&[u8], MessageId, u64)> {
        self.dedup_order
            .iter()
            .filter_map(|(until, key)| self.dedup.get(key).map(|(id, _)| (key.as_slice(), *id, *until)))
    }

    /// Remembers `key` for `id` until `until`, replacing an earlier window for it.
    pub(super) fn remember(&mut self, mut key: Vec<u8>, id: MessageId, until: u64) {
        if let Some((_, old_until)) = self.dedup.remove(&key) {
            let probe = (old_until, key);
            self.dedup_order.remove(&probe);
            key = probe.1;
            self.dedup_key_bytes -= key.len() as u64;
        }
        self.dedup_key_bytes += key.len() as u64;
        self.dedup_order.insert((until, key.clone()));
        self.dedup.insert(key, (id, until));
    }
}
