//! A message as stored: the immutable envelope (shared by every receiver of one
//! publish) and the per-mailbox delivery state around it.

use std::sync::Arc;

use super::MessageId;

/// What the sender sent plus what the server stamped. Never changes once stored;
/// shared through `Arc` so one payload can serve many receivers of one key space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub id: MessageId,
    /// The agent (ACL user) the server stamped as sender.
    pub from: Vec<u8>,
    /// The address it was sent to (a mailbox name for a direct message).
    pub to: Vec<u8>,
    /// Master clock at send, in milliseconds.
    pub ts: u64,
    /// 0 (lowest) to 9 (highest).
    pub priority: u8,
    /// Absolute expiry in milliseconds, if the message has a TTL.
    pub expires_at: Option<u64>,
    pub content_type: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// A JSON object, as text, validated at send.
    pub meta: Option<Vec<u8>>,
    pub thread: Option<Vec<u8>>,
    pub correlation: Option<Vec<u8>>,
    pub reply_to: Option<Vec<u8>>,
    /// The trusted gateway that sent it on behalf of `from` (`AS`), if any.
    pub via: Option<Vec<u8>>,
    /// The sender asked for a receipt (`CONFIRM`) when it is acked, dead-lettered or expires.
    pub confirm: bool,
}

impl Envelope {
    /// Bytes of variable-size content, for stats and `MEMORY USAGE`.
    pub fn content_bytes(&self) -> usize {
        self.from.len()
            + self.to.len()
            + self.payload.len()
            + [&self.content_type, &self.meta, &self.thread, &self.correlation, &self.reply_to, &self.via]
                .iter()
                .map(|f| f.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
    }

    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting to be read.
    Ready,
    /// Handed out by a read; invisible until acked, nacked or `until` passes.
    Leased { until: u64 },
    /// Nacked with a delay; becomes ready at `until`.
    Delayed { until: u64 },
}

/// A message held by one mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub env: Arc<Envelope>,
    /// How many times a read has handed it out.
    pub deliveries: u32,
    pub state: State,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DeadReason {
    /// Its lease ran out or it was nacked with `deliveries` at the mailbox's maximum.
    MaxDeliveries,
    /// Pushed out of a full mailbox (`OVERFLOW drop-oldest`).
    Overflow,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::MaxDeliveries => "maxdeliveries",
            DeadReason::Overflow => "overflow",
        }
    }

    pub fn code(self) -> u8 {
        match self {
            DeadReason::MaxDeliveries => 1,
            DeadReason::Overflow => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(DeadReason::MaxDeliveries),
            2 => Some(DeadReason::Overflow),
            _ => None,
        }
    }
}

/// A message moved to the mailbox's dead letters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub env: Arc<Envelope>,
    pub deliveries: u32,
    pub reason: DeadReason,
    /// When it died, in milliseconds.
    pub at: u64,
}
