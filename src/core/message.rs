//! A message as stored: the immutable envelope (shared by every receiver of one
//! publish) and the per-mailbox delivery state around it.

use std::sync::Arc;

use super::codec::varint_len;
use super::MessageId;

/// What the sender sent plus what the server stamped. Never changes once stored;
/// shared through `Arc` so one payload can serve many receivers of one key space.
///
/// One allocation holds it all, `Arc`'s counters included: a flag byte, the
/// priority, a byte saying which optional fields are present, the id's
/// millisecond part (8 bytes, little-endian), then LEB128 varints for the id's
/// sequence, `ts` and (if flagged) `expires_at`, then every field present as a
/// LEB128 length and its bytes (`from`, `to`, `payload`, then the optional ones
/// in `Parts::optional` order). Only `Envelope::new` writes it.
#[repr(transparent)]
pub struct Envelope([u8]);

/// Everything an envelope holds, its variable-size fields borrowed: what
/// `Envelope::new` takes and `Envelope::parts` gives back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parts<'a> {
    pub id: MessageId,
    /// The agent (ACL user) the server stamped as sender.
    pub from: &'a [u8],
    /// The address it was sent to (a mailbox name for a direct message).
    pub to: &'a [u8],
    /// Master clock at send, in milliseconds.
    pub ts: u64,
    /// 0 (lowest) to 9 (highest).
    pub priority: u8,
    /// Absolute expiry in milliseconds, if the message has a TTL.
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
    /// The sender asked for a receipt (`CONFIRM`) when it is acked, dead-lettered or expires.
    pub confirm: bool,
}

impl<'a> Parts<'a> {
    fn optional(&self) -> [Option<&'a [u8]>; 6] {
        [self.content_type, self.meta, self.thread, self.correlation, self.reply_to, self.via]
    }
}

/// The highest priority.
pub const MAX_PRIORITY: u8 = 9;
const FLAG_CONFIRM: u8 = 1;
const FLAG_EXPIRES: u8 = 2;
/// Bit of `thread` in the present byte (see `Parts::optional`).
const PRESENT_THREAD: u8 = 1 << 2;
/// Where the id's sequence starts: flags, priority, present, ms.
const SEQ_AT: usize = 11;

/// The varint at `*at`, moving `*at` past it (0 past the end: only `new` writes).
#[inline]
fn take_varint(bytes: &[u8], at: &mut usize) -> u64 {
    super::codec::take_varint(bytes, at).unwrap_or_default()
}

/// Fills a buffer of the exact size `Envelope::new` computed.
struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        self.out[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.bytes(&[(n as u8) | 0x80]);
            n >>= 7;
        }
        self.bytes(&[n as u8]);
    }
}

/// The field at `*at` (a varint length and its bytes), moving `*at` past it.
#[inline]
fn take_field<'a>(bytes: &'a [u8], at: &mut usize) -> &'a [u8] {
    let len = usize::try_from(take_varint(bytes, at)).unwrap_or(usize::MAX);
    let start = (*at).min(bytes.len());
    *at = start.saturating_add(len).min(bytes.len());
    &bytes[start..*at]
}

impl Envelope {
    pub fn new(parts: Parts<'_>) -> Arc<Envelope> {
        let optional = parts.optional();
        let fields = [parts.from, parts.to, parts.payload].into_iter().chain(optional.into_iter().flatten());
        let size = 3
            + 8
            + varint_len(parts.id.seq)
            + varint_len(parts.ts)
            + parts.expires_at.map_or(0, varint_len)
            + fields.clone().map(|f| f.len() + varint_len(f.len() as u64)).sum::<usize>();
        // Written in place: the one allocation, no copy. (A new `Arc` is unique.)
        // SAFETY: all zeros is a valid `[u8]`.
        let mut shared: Arc<[u8]> = unsafe { Arc::<[u8]>::new_zeroed_slice(size).assume_init() };
        if let Some(out) = Arc::get_mut(&mut shared) {
            let mut w = Writer { out, at: 0 };
            let flags = (u8::from(parts.confirm) * FLAG_CONFIRM)
                | (u8::from(parts.expires_at.is_some()) * FLAG_EXPIRES);
            let present =
                optional.iter().enumerate().fold(0u8, |bits, (i, f)| bits | (u8::from(f.is_some()) << i));
            w.bytes(&[flags, parts.priority, present]);
            w.bytes(&parts.id.ms.to_le_bytes());
            w.varint(parts.id.seq);
            w.varint(parts.ts);
            if let Some(at) = parts.expires_at {
                w.varint(at);
            }
            for field in fields {
                w.varint(field.len() as u64);
                w.bytes(field);
            }
            debug_assert_eq!(w.at, size);
        }
        Self::shared(shared)
    }

    /// The bytes an envelope is stored as (what `from_bytes` takes back).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The envelope `bytes` hold, if they are exactly what `as_bytes` gives for some
    /// envelope: known flags, a priority of at most 9, well-formed varints, every
    /// field inside and nothing after the last one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Arc<Envelope>> {
        let (&flags, &priority, &present) = (bytes.first()?, bytes.get(1)?, bytes.get(2)?);
        if flags & !(FLAG_CONFIRM | FLAG_EXPIRES) != 0 || priority > MAX_PRIORITY || present >> 6 != 0 {
            return None;
        }
        // The id's sequence comes after its 8-byte ms: a shorter buffer fails there.
        let mut at = SEQ_AT;
        let varints = if flags & FLAG_EXPIRES != 0 { 3 } else { 2 };
        for _ in 0..varints {
            super::codec::take_varint(bytes, &mut at)?;
        }
        for _ in 0..3 + present.count_ones() {
            let len = usize::try_from(super::codec::take_varint(bytes, &mut at)?).ok()?;
            at = at.checked_add(len).filter(|&end| end <= bytes.len())?;
        }
        (at == bytes.len()).then(|| Self::shared(Arc::from(bytes)))
    }

    fn shared(bytes: Arc<[u8]>) -> Arc<Envelope> {
        // SAFETY: `Envelope` is `repr(transparent)` over `[u8]`, so `ArcInner<[u8]>`
        // and `ArcInner<Envelope>` have one layout and the pointer's length carries over.
        unsafe { Arc::from_raw(Arc::into_raw(bytes) as *const Envelope) }
    }

    fn byte(&self, i: usize) -> u8 {
        self.0.get(i).copied().unwrap_or(0)
    }

    pub fn priority(&self) -> u8 {
        self.byte(1)
    }

    pub fn confirm(&self) -> bool {
        self.byte(0) & FLAG_CONFIRM != 0
    }

    pub fn id(&self) -> MessageId {
        let ms = self.0.get(3..SEQ_AT).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
        let mut at = SEQ_AT;
        MessageId { ms, seq: take_varint(&self.0, &mut at) }
    }

    /// `(ts, expires_at, where the fields start)`.
    #[inline]
    fn tail(&self) -> (u64, Option<u64>, usize) {
        let mut at = SEQ_AT;
        take_varint(&self.0, &mut at);
        let ts = take_varint(&self.0, &mut at);
        let expires_at = (self.byte(0) & FLAG_EXPIRES != 0).then(|| take_varint(&self.0, &mut at));
        (ts, expires_at, at)
    }

    /// Master clock at send, in milliseconds.
    pub fn ts(&self) -> u64 {
        self.tail().0
    }

    /// Absolute expiry in milliseconds, if the message has a TTL.
    pub fn expires_at(&self) -> Option<u64> {
        if self.byte(0) & FLAG_EXPIRES == 0 {
            return None;
        }
        self.tail().1
    }

    /// Every field, borrowed.
    pub fn parts(&self) -> Parts<'_> {
        let (ts, expires_at, mut at) = self.tail();
        let from = take_field(&self.0, &mut at);
        let to = take_field(&self.0, &mut at);
        let payload = take_field(&self.0, &mut at);
        let present = self.byte(2);
        let mut optional = [None; 6];
        for (i, slot) in optional.iter_mut().enumerate() {
            if present & (1 << i) != 0 {
                *slot = Some(take_field(&self.0, &mut at));
            }
        }
        let [content_type, meta, thread, correlation, reply_to, via] = optional;
        Parts {
            id: self.id(),
            from,
            to,
            ts,
            priority: self.priority(),
            expires_at,
            content_type,
            payload,
            meta,
            thread,
            correlation,
            reply_to,
            via,
            confirm: self.confirm(),
        }
    }

    /// The n-th of `from`, `to`, `payload`.
    fn field(&self, n: usize) -> &[u8] {
        let mut at = self.tail().2;
        for _ in 0..n {
            take_field(&self.0, &mut at);
        }
        take_field(&self.0, &mut at)
    }

    pub fn from(&self) -> &[u8] {
        self.field(0)
    }

    pub fn to(&self) -> &[u8] {
        self.field(1)
    }

    pub fn payload(&self) -> &[u8] {
        self.field(2)
    }

    pub fn thread(&self) -> Option<&[u8]> {
        // Most messages have no thread: no walk.
        if self.byte(2) & PRESENT_THREAD != 0 {
            self.parts().thread
        } else {
            None
        }
    }

    /// Bytes of variable-size content, for stats and `MEMORY USAGE`.
    pub fn content_bytes(&self) -> usize {
        let (mut at, mut sum) = (self.tail().2, 0);
        while at < self.0.len() {
            sum += take_field(&self.0, &mut at).len();
        }
        sum
    }

    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at().is_some_and(|at| at <= now)
    }
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Envelope {}

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
