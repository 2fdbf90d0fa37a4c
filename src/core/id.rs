//! Message ids: `<ms>-<seq>`, unique and time ordered, like stream ids.

#![forbid(unsafe_code)]

use std::fmt;

#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct MessageId {
    pub ms: u64,
    pub seq: u64,
}

impl super::chunked::Keyed for MessageId {
    type Key = MessageId;

    fn key(&self) -> MessageId {
        *self
    }
}

impl MessageId {
    pub const MIN: MessageId = MessageId { ms: 0, seq: 0 };
    pub const MAX: MessageId = MessageId { ms: u64::MAX, seq: u64::MAX };
    /// Ids a mailbox holds or hands out stay below this millisecond (2^48, the year
    /// 10889), so there is always a next id: a loaded id at or past it is refused, and
    /// so is a send that would need one.
    pub const LIMIT_MS: u64 = 1 << 48;

    /// Whether ids after this one can still be made (see `LIMIT_MS`).
    pub fn leaves_room(self) -> bool {
        self.ms < Self::LIMIT_MS
    }

    pub fn new(ms: u64, seq: u64) -> Self {
        MessageId { ms, seq }
    }

    /// Parses the exact form `<ms>-<seq>` (both decimal u64, no sign, no spaces).
    pub fn parse(s: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(s).ok()?;
        let (ms, seq) = text.split_once('-')?;
        Some(MessageId { ms: parse_u64(ms)?, seq: parse_u64(seq)? })
    }

    /// Parses a range bound as `XRANGE` does: `-` and `+` are the extremes, a bare
    /// `<ms>` means the first (`start`) or last (`end`) id of that millisecond.
    pub fn parse_bound(s: &[u8], is_start: bool) -> Option<Self> {
        match s {
            b"-" => Some(Self::MIN),
            b"+" => Some(Self::MAX),
            _ => {
                if let Some(id) = Self::parse(s) {
                    return Some(id);
                }
                let ms = parse_u64(std::str::from_utf8(s).ok()?)?;
                Some(MessageId { ms, seq: if is_start { 0 } else { u64::MAX } })
            }
        }
    }

    /// The id a new message gets: the current millisecond if it is later than
    /// `last`, else the next sequence number after `last`.
    pub fn next_after(last: MessageId, now_ms: u64) -> MessageId {
        if now_ms > last.ms {
            MessageId { ms: now_ms, seq: 0 }
        } else if last.seq < u64::MAX {
            MessageId { ms: last.ms, seq: last.seq + 1 }
        } else {
            MessageId { ms: last.ms.saturating_add(1), seq: 0 }
        }
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// "00" to "99", for `decimal`.
const PAIRS: [u8; 200] = {
    let mut pairs = [0; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// `n` in decimal, written by hand into `buf` two digits at a time (no `fmt`:
/// this runs several times per command).
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        buf[at] = b'0' + n as u8;
    }
    &buf[at..]
}

impl MessageId {
    /// The id as text (`<ms>-<seq>`), written into `buf`.
    pub fn text(self, buf: &mut [u8; 41]) -> &[u8] {
        let (mut ms, mut seq) = ([0; 20], [0; 20]);
        let (ms, seq) = (decimal(self.ms, &mut ms), decimal(self.seq, &mut seq));
        let len = ms.len() + 1 + seq.len();
        buf[..ms.len()].copy_from_slice(ms);
        buf[ms.len()] = b'-';
        buf[ms.len() + 1..len].copy_from_slice(seq);
        &buf[..len]
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only ASCII digits and '-' are written.
        f.write_str(std::str::from_utf8(self.text(&mut [0; 41])).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_writes_what_display_writes() {
        let mut rng = crate::core::xorshift::XorShift(0x9e37_79b9_7f4a_7c15);
        let edges = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 1_795_848_265_604, u64::MAX - 1, u64::MAX];
        let powers = (0..20).flat_map(|e| [10u64.pow(e) - 1, 10u64.pow(e)]);
        let random = (0..2000).map(|i| rng.next() >> (i % 64));
        for n in edges.into_iter().chain(powers).chain(random) {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes(), "{n}");
        }
    }

    #[test]
    fn parses_and_formats() {
        let id = MessageId::parse(b"1700000000000-7").unwrap();
        assert_eq!(id, MessageId::new(1_700_000_000_000, 7));
        assert_eq!(id.to_string(), "1700000000000-7");
        for (ms, seq) in [(0, 0), (9, 10), (u64::MAX, u64::MAX), (1, 0)] {
            assert_eq!(MessageId::new(ms, seq).to_string(), format!("{ms}-{seq}"));
        }
        for bad in [
            &b""[..],
            b"-",
            b"1",
            b"1-",
            b"-1",
            b"a-1",
            b"1-+2",
            b" 1-2",
            b"1-2-3",
            b"99999999999999999999-0",
        ] {
            assert_eq!(MessageId::parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn bounds() {
        assert_eq!(MessageId::parse_bound(b"-", true), Some(MessageId::MIN));
        assert_eq!(MessageId::parse_bound(b"+", false), Some(MessageId::MAX));
        assert_eq!(MessageId::parse_bound(b"5", true), Some(MessageId::new(5, 0)));
        assert_eq!(MessageId::parse_bound(b"5", false), Some(MessageId::new(5, u64::MAX)));
        assert_eq!(MessageId::parse_bound(b"x", false), None);
    }

    #[test]
    fn next_is_strictly_later() {
        let a = MessageId::new(10, 0);
        assert_eq!(MessageId::next_after(a, 11), MessageId::new(11, 0));
        assert_eq!(MessageId::next_after(a, 10), MessageId::new(10, 1));
        // A clock that went backwards still yields a later id.
        assert_eq!(MessageId::next_after(a, 3), MessageId::new(10, 1));
        assert_eq!(MessageId::next_after(MessageId::new(4, u64::MAX), 1), MessageId::new(5, 0));
    }
}
