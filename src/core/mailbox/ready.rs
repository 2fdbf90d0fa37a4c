//! The ready set of a mailbox: which held messages a read hands out next.

#![forbid(unsafe_code)]

use crate::core::chunked::ChunkedMap;
use crate::core::id::MessageId;

/// Ready messages: one id map per priority that has any, highest priority
/// first, each oldest first. (One map keyed by (priority, id) would spend 8
/// more bytes per message on the priority and its padding.)
#[derive(Clone, Debug, Default)]
pub(super) struct ReadySet {
    levels: Vec<(u8, ChunkedMap<MessageId>)>,
}

impl ReadySet {
    fn level(&self, priority: u8) -> Result<usize, usize> {
        self.levels.binary_search_by(|(p, _)| priority.cmp(p))
    }

    pub(super) fn insert(&mut self, priority: u8, id: MessageId) {
        let at = match self.level(priority) {
            Ok(at) => at,
            Err(at) => {
                // Most mailboxes use one priority: room for one level, not four.
                self.levels.reserve_exact(1);
                self.levels.insert(at, (priority, ChunkedMap::new()));
                at
            }
        };
        self.levels[at].1.insert(id);
    }

    pub(super) fn remove(&mut self, priority: u8, id: &MessageId) {
        if let Ok(at) = self.level(priority) {
            self.levels[at].1.remove(id);
            if self.levels[at].1.is_empty() {
                self.levels.remove(at);
                if self.levels.is_empty() {
                    self.levels = Vec::new();
                }
            }
        }
    }

    #[cfg(test)]
    pub(super) fn contains(&self, priority: u8, id: &MessageId) -> bool {
        self.level(priority).is_ok_and(|at| self.levels[at].1.contains_key(id))
    }

    pub(super) fn len(&self) -> usize {
        self.levels.iter().map(|(_, ids)| ids.len()).sum()
    }

    pub(super) fn allocated_bytes(&self) -> usize {
        self.levels.iter().map(|(_, ids)| ids.allocated_bytes()).sum::<usize>()
            + self.levels.capacity() * std::mem::size_of::<(u8, ChunkedMap<MessageId>)>()
    }

    /// In delivery order: highest priority first, then oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = &MessageId> + '_ {
        self.levels.iter().flat_map(|(_, ids)| ids.iter())
    }
}
