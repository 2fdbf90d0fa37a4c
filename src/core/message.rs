//! A message as stored: the immutable envelope (shared by every receiver of one
//! publish) and the per-mailbox delivery state around it.

use std::sync::Arc;

use super::MessageId;

/// What the sender sent plus what the server stamped. Never changes once stored;
/// shared through `Arc` so one payload can serve many receivers of one key space.
///
/// The variable-size fields live in one buffer (a flag byte for the optional
/// fields present, then each field as a LEB128 length and its bytes): a message
/// costs two allocations, this struct and the buffer, whatever it carries.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: MessageId,
    /// Master clock at send, in milliseconds.
    pub ts: u64,
    /// Absolute expiry in milliseconds, if the message has a TTL.
    pub expires_at: Option<u64>,
    /// 0 (lowest) to 9 (highest).
    pub priority: u8,
    /// The sender asked for a receipt (`CONFIRM`) when it is acked, dead-lettered or expires.
    pub confirm: bool,
    bytes: Box<[u8]>,
}

/// Everything an envelope holds, its variable-size fields borrowed: what
/// `Envelope::new` takes and `Envelope::parts` gives back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parts<'a> {
    pub id: MessageId,
    /// The agent (ACL user) the server stamped as sender.
    pub from: &'a [u8],
    /// The address it was sent to (a mailbox name for a direct message).
    pub to: &'a [u8],
    pub ts: u64,
    pub priority: u8,
    pub expires_at: Option<u64>,
    pub content_type: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// A JSON object, as text, validated at send.
    pub meta: Option<&'a [u8]>,
    pub thread: Option<&'a [u8]>,
    pub correlation: Option<&'a [u8]>,
    pub reply_to: Option<&'a [u8]>,
    /// The trusted gateway that sent it on behalf of `from` (`AS`), if any.
    pub via: Option<&'a [u8]>,
    pub confirm: bool,
}

impl<'a> Parts<'a> {
    fn optional(&self) -> [Option<&'a [u8]>; 6] {
        [self.content_type, self.meta, self.thread, self.correlation, self.reply_to, self.via]
    }
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    let mut n = field.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(field);
}

/// The field at `*at` (written by `put_field`), moving `*at` past it.
fn take_field<'a>(bytes: &'a [u8], at: &mut usize) -> &'a [u8] {
    let mut len = 0usize;
    let mut shift = 0;
    while let Some(&b) = bytes.get(*at).filter(|_| shift < usize::BITS) {
        *at += 1;
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    let start = (*at).min(bytes.len());
    *at = start.saturating_add(len).min(bytes.len());
    &bytes[start..*at]
}

impl Envelope {
    pub fn new(parts: Parts<'_>) -> Envelope {
        let optional = parts.optional();
        let fields =
            || [parts.from, parts.to, parts.payload].into_iter().chain(optional.into_iter().flatten());
        // Exactly the size written, so that the boxed slice keeps this allocation.
        let stored = |f: &[u8]| f.len() + (usize::BITS - (f.len() | 1).leading_zeros()).div_ceil(7) as usize;
        let mut bytes = Vec::with_capacity(1 + fields().map(stored).sum::<usize>());
        let present =
            optional.iter().enumerate().fold(0u8, |bits, (i, f)| bits | (u8::from(f.is_some()) << i));
        bytes.push(present);
        for field in fields() {
            put_field(&mut bytes, field);
        }
        debug_assert_eq!(bytes.len(), bytes.capacity());
        Envelope {
            id: parts.id,
            ts: parts.ts,
            expires_at: parts.expires_at,
            priority: parts.priority,
            confirm: parts.confirm,
            bytes: bytes.into_boxed_slice(),
        }
    }

    /// Every field, borrowed.
    pub fn parts(&self) -> Parts<'_> {
        let mut at = 1;
        let from = take_field(&self.bytes, &mut at);
        let to = take_field(&self.bytes, &mut at);
        let payload = take_field(&self.bytes, &mut at);
        let present = self.bytes.first().copied().unwrap_or(0);
        let mut optional = [None; 6];
        for (i, slot) in optional.iter_mut().enumerate() {
            if present & (1 << i) != 0 {
                *slot = Some(take_field(&self.bytes, &mut at));
            }
        }
        let [content_type, meta, thread, correlation, reply_to, via] = optional;
        Parts {
            id: self.id,
            from,
            to,
            ts: self.ts,
            priority: self.priority,
            expires_at: self.expires_at,
            content_type,
            payload,
            meta,
            thread,
            correlation,
            reply_to,
            via,
            confirm: self.confirm,
        }
    }

    pub fn from(&self) -> &[u8] {
        take_field(&self.bytes, &mut 1)
    }

    pub fn to(&self) -> &[u8] {
        let mut at = 1;
        take_field(&self.bytes, &mut at);
        take_field(&self.bytes, &mut at)
    }

    pub fn payload(&self) -> &[u8] {
        let mut at = 1;
        take_field(&self.bytes, &mut at);
        take_field(&self.bytes, &mut at);
        take_field(&self.bytes, &mut at)
    }

    pub fn thread(&self) -> Option<&[u8]> {
        // Bit 2: see `Parts::optional`. Most messages have no thread: no walk.
        if self.bytes.first().is_some_and(|present| present & (1 << 2) != 0) {
            self.parts().thread
        } else {
            None
        }
    }

    /// Bytes of variable-size content, for stats and `MEMORY USAGE`.
    pub fn content_bytes(&self) -> usize {
        let (mut at, mut sum) = (1, 0);
        while at < self.bytes.len() {
            sum += take_field(&self.bytes, &mut at).len();
        }
        sum
    }

    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.parts().fmt(f)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_comes_back_as_it_went_in() {
        let big = vec![7u8; 20_000];
        let parts = Parts {
            id: MessageId::new(5, 6),
            from: b"alice",
            to: b"",
            ts: 9,
            priority: 3,
            expires_at: Some(10),
            content_type: Some(b""),
            payload: &big,
            meta: None,
            thread: Some(&big[..200]),
            correlation: None,
            reply_to: Some(b"{t}bob"),
            via: Some(b"gw"),
            confirm: true,
        };
        let env = Envelope::new(parts);
        assert_eq!(env.parts(), parts);
        assert_eq!(
            (env.from(), env.to(), env.payload(), env.thread()),
            (&b"alice"[..], &b""[..], &big[..], Some(&big[..200]))
        );
        assert_eq!(env.content_bytes(), 5 + 20_000 + 200 + 6 + 2);
        let bare = Envelope::new(Parts::default());
        assert_eq!(bare.parts(), Parts::default());
        assert_ne!(bare, Envelope::new(Parts { content_type: Some(b""), ..Parts::default() }));
    }
}
