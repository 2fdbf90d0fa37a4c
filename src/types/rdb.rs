//! How the data types meet an RDB stream: the traits `save` and `load` are written
//! against (`RdbIn`, `RdbOut`), so that they never see Redis; `RdbItems` keeps a
//! stream in memory for unit tests and fuzzing; `DigestOut` feeds a digest.

#![forbid(unsafe_code)]

use crate::core::Loaded;

/// Where RDB bytes come from; `RdbReader` in the callbacks, a slice in tests.
pub trait RdbIn {
    fn unsigned(&mut self) -> Option<u64>;
    fn buffer(&mut self) -> Option<Vec<u8>>;
    /// The next buffer, lent to `read` (no copy where the source allows it).
    fn with_buffer<R>(&mut self, read: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.buffer().map(|b| read(&b))
    }
    /// The next buffer, owned (in place where the source allows it, else a copy).
    fn loaded(&mut self) -> Option<Loaded> {
        self.with_buffer(Loaded::copy_of)
    }
    /// The name of the key being loaded, where the server tells it.
    fn key_name(&self) -> Option<Vec<u8>> {
        None
    }
}

pub trait RdbOut {
    fn unsigned(&mut self, value: u64);
    fn buffer(&mut self, bytes: &[u8]);
}

/// What `save` writes, kept in memory and read back item by item: an `RdbOut`
/// and an `RdbIn` without Redis, for unit tests and fuzzing.
#[derive(Clone, Debug, Default)]
pub struct RdbItems {
    pub items: Vec<RdbItem>,
    pub pos: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RdbItem {
    Unsigned(u64),
    Buffer(Vec<u8>),
}

impl RdbOut for RdbItems {
    fn unsigned(&mut self, value: u64) {
        self.items.push(RdbItem::Unsigned(value));
    }

    fn buffer(&mut self, bytes: &[u8]) {
        self.items.push(RdbItem::Buffer(bytes.to_vec()));
    }
}

impl RdbIn for RdbItems {
    fn unsigned(&mut self) -> Option<u64> {
        let item = self.items.get(self.pos)?;
        self.pos += 1;
        match item {
            RdbItem::Unsigned(v) => Some(*v),
            RdbItem::Buffer(_) => None,
        }
    }

    fn buffer(&mut self) -> Option<Vec<u8>> {
        let item = self.items.get(self.pos)?;
        self.pos += 1;
        match item {
            RdbItem::Buffer(v) => Some(v.clone()),
            RdbItem::Unsigned(_) => None,
        }
    }
}

/// An `RdbOut` that hands every item to a digest (or any byte sink), so that a
/// value's digest covers exactly what its RDB encoding holds.
pub struct DigestOut<F: FnMut(&[u8])>(pub F);

impl<F: FnMut(&[u8])> RdbOut for DigestOut<F> {
    fn unsigned(&mut self, value: u64) {
        (self.0)(&value.to_le_bytes());
    }

    fn buffer(&mut self, bytes: &[u8]) {
        (self.0)(bytes);
    }
}
