//! The primitives of every binary format here: LEB128 varints (at most 10 bytes)
//! and length-prefixed byte strings, and the error a decoder gives for bad bytes.
//! Shared by the codec (`codec.rs`) and the envelope's own layout (`message.rs`).

#![forbid(unsafe_code)]

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

/// How many bytes `put_varint` writes for `value`.
pub fn varint_len(value: u64) -> usize {
    (u64::BITS - (value | 1).leading_zeros()).div_ceil(7) as usize
}

/// How many bytes `put_bytes` writes for `bytes`.
pub fn bytes_len(bytes: &[u8]) -> usize {
    varint_len(bytes.len() as u64) + bytes.len()
}

/// Appends `value` as a LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The varint at `*at` (as `put_varint` writes it), moving `*at` past it;
/// `None` when it is cut short or overflows.
#[inline(always)]
pub fn take_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    varint_at(bytes, at).ok()
}

/// One- and two-byte varints (every field length under 16 KiB, most counts) are
/// read inline; longer ones go through `varint_slow`.
#[inline(always)]
pub fn varint_at(bytes: &[u8], at: &mut usize) -> Result<u64, DecodeError> {
    if let Some(&b) = bytes.get(*at) {
        if b < 0x80 {
            *at += 1;
            return Ok(u64::from(b));
        }
        if let Some(&c) = bytes.get(*at + 1) {
            if c < 0x80 {
                *at += 2;
                return Ok(u64::from(b & 0x7f) | (u64::from(c) << 7));
            }
        }
    }
    varint_slow(bytes, at)
}

#[cold]
#[inline(never)]
fn varint_slow(bytes: &[u8], at: &mut usize) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    for i in 0..10 {
        let b = *bytes.get(*at).ok_or(DecodeError("truncated"))?;
        *at += 1;
        let low = u64::from(b & 0x7f);
        // The tenth byte carries only bit 63.
        if i == 9 && low > 1 {
            return Err(DecodeError("varint overflows u64"));
        }
        value |= low << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError("varint longer than 10 bytes"))
}

/// Appends `bytes` as a varint length, then the bytes.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}
