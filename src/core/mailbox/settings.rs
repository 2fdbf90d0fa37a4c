//! A mailbox's settings and its overflow policy.

#![forbid(unsafe_code)]

/// Per-mailbox settings. Always explicit values (resolved from the module's
/// configs when the mailbox is created), so a replica never depends on its own
/// configs. 0 means "no limit" / "none" where stated.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Maximum number of held messages (ready + leased + delayed); 0 = unlimited.
    pub maxlen: u64,
    /// Default TTL in ms for messages sent without one; 0 = never expire.
    pub ttl_ms: u64,
    /// Default lease (visibility timeout) in ms for reads without `LEASE`; >= 1.
    pub lease_ms: u64,
    /// Deliveries after which an expired lease or a nack dead-letters; 0 = unlimited.
    pub max_deliveries: u32,
    /// How long a `DEDUP` key is remembered, in ms; 0 = dedup disabled.
    pub dedup_window_ms: u64,
    /// What a send to a full mailbox does.
    pub overflow: Overflow,
}

/// What happens when a message arrives at a mailbox holding `maxlen` messages.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// The send is refused.
    Refuse,
    /// The oldest held message moves to the dead letters to make room.
    DropOldest,
}

impl Overflow {
    pub fn code(self) -> u8 {
        match self {
            Overflow::Refuse => 0,
            Overflow::DropOldest => 1,
        }
    }

    pub fn from_code(code: u8) -> Option<Overflow> {
        match code {
            0 => Some(Overflow::Refuse),
            1 => Some(Overflow::DropOldest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::Refuse => "refuse",
            Overflow::DropOldest => "drop-oldest",
        }
    }
}
