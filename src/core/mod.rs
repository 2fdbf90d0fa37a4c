//! The pure mailbox algorithm: no Redis, no FFI, no clock. Every function that
//! depends on time takes `now` (milliseconds since the epoch) as an argument, so
//! the master and a replica replaying its effects compute the same state.

// Denied, not forbidden: one child (an FFI home) allows it for itself.
#![deny(unsafe_code)]

pub mod chunked;
pub mod codec;
pub mod grants;
pub mod id;
pub mod mailbox;
pub mod message;
pub mod meta;
pub mod names;
pub mod namespace;
pub mod topics;
pub mod wire;
#[cfg(test)]
pub(crate) mod xorshift;

pub use id::MessageId;
pub use mailbox::{Mailbox, MailboxCounts, NackOutcome, Overflow, Settings, SweepOutcome};
pub use message::{
    Batch, DeadLetter, DeadReason, Entry, Envelope, EnvelopeRef, Loaded, Parts, Scanned, State,
};
