//! The binary encoding of envelopes, entries, dead letters and settings, shared by
//! RDB save/load, the replicated effects and the AOF rewrite. Decoding never
//! panics and never trusts a length: bad bytes give an error.
//!
//! Each blob starts with a format byte (`FORMAT`); integers are little-endian
//! varints (LEB128, at most 10 bytes); byte strings are a varint length then the
//! bytes; an optional field is a 0/1 byte then the value.
//!
//! - envelope, format 4: its stored bytes as one byte string, exactly as
//!   `Envelope::as_bytes` gives them (see `message.rs`), checked whole by
//!   `Envelope::from_bytes`: saving and loading copy it, nothing more.
//! - envelope, formats 1 to 3 (still read): id.ms, id.seq, from, to, ts, priority
//!   (one byte, 0..=9), expires_at (optional integer), content_type (optional),
//!   payload, meta, thread, correlation, reply_to (all three optional), then from
//!   format 2 `via` (optional), from format 3 a flags byte.
//! - entry: FORMAT, the envelope, deliveries, state (one byte: 0 ready,
//!   1 leased then `until`, 2 delayed then `until`).
//! - dead letter: FORMAT, the envelope, deliveries, reason code (one
//!   byte), at.
//! - settings: FORMAT, maxlen, ttl_ms, lease_ms (>= 1), max_deliveries (fits
//!   u32), dedup_window_ms.

#![forbid(unsafe_code)]

use super::id::MessageId;
use super::mailbox::{Overflow, Settings};
use super::message::{in_batch_len, put_in_batch, Batch, Loaded, BATCH_HEAD_BYTES};
use super::message::{DeadLetter, DeadReason, Entry, Envelope, EnvelopeRef, Parts, Scanned, State};
use super::wire::{put_bytes, put_varint, varint_at, varint_len, DecodeError};

/// The format written. 1: the first; 2 adds the envelope's `via` and the settings'
/// `overflow`; 3 adds the envelope's flags byte (bit 0: `confirm`); 4 stores the
/// envelope as its in-memory bytes.
pub const FORMAT: u8 = 4;
/// The last format whose envelope is a list of fields.
const FIELDS_FORMAT: u8 = 3;

const FLAG_CONFIRM: u8 = 1;

use super::message::MAX_PRIORITY;

const STATE_READY: u8 = 0;
const STATE_LEASED: u8 = 1;
const STATE_DELAYED: u8 = 2;

pub fn encode_envelope(env: &Envelope, out: &mut Vec<u8>) {
    out.push(FORMAT);
    put_bytes(out, env.as_bytes());
}

pub fn decode_envelope(bytes: &[u8]) -> Result<EnvelopeRef, DecodeError> {
    let mut r = Reader::new(bytes);
    r.format()?;
    let env = r.envelope()?;
    r.finish()?;
    Ok(env)
}

/// An entry: its envelope followed by deliveries and state.
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    out.push(FORMAT);
    put_bytes(out, entry.env.as_bytes());
    put_varint(out, u64::from(entry.deliveries));
    put_state(entry.state(), out);
}

pub fn decode_entry(bytes: &[u8]) -> Result<Entry, DecodeError> {
    decode_entry_scanned(bytes).map(|(entry, _)| entry)
}

/// `decode_entry`, with what checking its envelope learnt.
pub fn decode_entry_scanned(bytes: &[u8]) -> Result<(Entry, Scanned), DecodeError> {
    let mut r = Reader::new(bytes);
    r.format()?;
    let (env, scanned) = r.envelope_scanned()?;
    let deliveries = r.u32("deliveries out of range")?;
    let state = take_state(r.bytes, &mut r.pos)?;
    r.finish()?;
    Ok((Entry::new(env, deliveries, state), scanned))
}

pub fn encode_dead(dead: &DeadLetter, out: &mut Vec<u8>) {
    out.push(FORMAT);
    put_bytes(out, dead.env.as_bytes());
    put_varint(out, u64::from(dead.deliveries));
    out.push(dead.reason.code());
    put_varint(out, dead.at);
}

pub fn decode_dead(bytes: &[u8]) -> Result<DeadLetter, DecodeError> {
    decode_dead_scanned(bytes).map(|(dead, _)| dead)
}

/// `decode_dead`, with what checking its envelope learnt.
pub fn decode_dead_scanned(bytes: &[u8]) -> Result<(DeadLetter, Scanned), DecodeError> {
    let mut r = Reader::new(bytes);
    r.format()?;
    let (env, scanned) = r.envelope_scanned()?;
    let deliveries = r.u32("deliveries out of range")?;
    let reason = DeadReason::from_code(r.byte()?).ok_or(DecodeError("unknown dead reason"))?;
    let at = r.varint()?;
    r.finish()?;
    Ok((DeadLetter { env, deliveries, reason, at }, scanned))
}

// ---- batches shared in place (RDB encoding 3) ------------------------------
//
// A batch: `BATCH_HEAD_BYTES` bytes, the first `FORMAT` and the rest 0 (room for
// the loader's bookkeeping), then its items. An entry: deliveries, state (as in
// `encode_entry`), then its envelope as `put_in_batch` writes it (its length, 4
// bytes of 0 where a load writes the envelope's offset, then its bytes). A dead letter: deliveries, reason code,
// at, then its envelope the same way. The envelope comes last so that a load
// shares it where it lies.

/// Starts a batch in `out` (empty).
pub fn start_batch(out: &mut Vec<u8>) {
    out.push(FORMAT);
    out.resize(BATCH_HEAD_BYTES, 0);
}

/// Appends `entry` to the batch `out`.
pub fn put_entry_in_batch(entry: &Entry, out: &mut Vec<u8>) {
    put_varint(out, u64::from(entry.deliveries));
    put_state(entry.state(), out);
    put_in_batch(&entry.env, out);
}

/// Appends `dead` to the batch `out`.
pub fn put_dead_in_batch(dead: &DeadLetter, out: &mut Vec<u8>) {
    put_varint(out, u64::from(dead.deliveries));
    out.push(dead.reason.code());
    put_varint(out, dead.at);
    put_in_batch(&dead.env, out);
}

/// How many bytes `put_entry_in_batch` writes for `entry`.
pub fn entry_in_batch_len(entry: &Entry) -> usize {
    varint_len(u64::from(entry.deliveries)) + state_len(entry.state()) + in_batch_len(&entry.env)
}

/// How many bytes `put_dead_in_batch` writes for `dead`.
pub fn dead_in_batch_len(dead: &DeadLetter) -> usize {
    varint_len(u64::from(dead.deliveries)) + 1 + varint_len(dead.at) + in_batch_len(&dead.env)
}

/// A loaded batch, once its head is checked.
pub fn open_batch(loaded: Loaded) -> Result<Batch, DecodeError> {
    if loaded.bytes().first() != Some(&FORMAT) {
        return Err(DecodeError("unknown batch format"));
    }
    Batch::new(loaded).ok_or(DecodeError("batch shorter than its head"))
}

/// The entry at `*at` in `batch.body()`, moving `*at` past it.
pub fn take_entry_in_batch(batch: &mut Batch, at: &mut usize) -> Result<(Entry, Scanned), DecodeError> {
    let body = batch.body();
    let deliveries =
        u32::try_from(varint_at(body, at)?).map_err(|_| DecodeError("deliveries out of range"))?;
    let state = take_state(body, at)?;
    let (env, scanned, end) = batch.envelope(*at).ok_or(DecodeError("malformed envelope"))?;
    *at = end;
    Ok((Entry::new(env, deliveries, state), scanned))
}

/// The dead letter at `*at` in `batch.body()`, moving `*at` past it.
pub fn take_dead_in_batch(batch: &mut Batch, at: &mut usize) -> Result<(DeadLetter, Scanned), DecodeError> {
    let body = batch.body();
    let deliveries =
        u32::try_from(varint_at(body, at)?).map_err(|_| DecodeError("deliveries out of range"))?;
    let code = *body.get(*at).ok_or(DecodeError("truncated"))?;
    *at += 1;
    let reason = DeadReason::from_code(code).ok_or(DecodeError("unknown dead reason"))?;
    let dead_at = varint_at(body, at)?;
    let (env, scanned, end) = batch.envelope(*at).ok_or(DecodeError("malformed envelope"))?;
    *at = end;
    Ok((DeadLetter { env, deliveries, reason, at: dead_at }, scanned))
}

fn put_state(state: State, out: &mut Vec<u8>) {
    match state {
        State::Ready => out.push(STATE_READY),
        State::Leased { until } => {
            out.push(STATE_LEASED);
            put_varint(out, until);
        }
        State::Delayed { until } => {
            out.push(STATE_DELAYED);
            put_varint(out, until);
        }
    }
}

fn state_len(state: State) -> usize {
    match state {
        State::Ready => 1,
        State::Leased { until } | State::Delayed { until } => 1 + varint_len(until),
    }
}

fn take_state(bytes: &[u8], at: &mut usize) -> Result<State, DecodeError> {
    let kind = *bytes.get(*at).ok_or(DecodeError("truncated"))?;
    *at += 1;
    match kind {
        STATE_READY => Ok(State::Ready),
        STATE_LEASED => Ok(State::Leased { until: varint_at(bytes, at)? }),
        STATE_DELAYED => Ok(State::Delayed { until: varint_at(bytes, at)? }),
        _ => Err(DecodeError("unknown entry state")),
    }
}

pub fn encode_settings(settings: &Settings, out: &mut Vec<u8>) {
    out.push(FORMAT);
    put_varint(out, settings.maxlen);
    put_varint(out, settings.ttl_ms);
    put_varint(out, settings.lease_ms);
    put_varint(out, u64::from(settings.max_deliveries));
    put_varint(out, settings.dedup_window_ms);
    out.push(settings.overflow.code());
}

pub fn decode_settings(bytes: &[u8]) -> Result<Settings, DecodeError> {
    let mut r = Reader::new(bytes);
    r.format()?;
    let maxlen = r.varint()?;
    let ttl_ms = r.varint()?;
    let lease_ms = r.varint()?;
    if lease_ms == 0 {
        return Err(DecodeError("lease_ms must be at least 1"));
    }
    let max_deliveries = r.u32("max_deliveries out of range")?;
    let dedup_window_ms = r.varint()?;
    let overflow = if r.format >= 2 {
        Overflow::from_code(r.byte()?).ok_or(DecodeError("unknown overflow policy"))?
    } else {
        Overflow::Refuse
    };
    r.finish()?;
    Ok(Settings { maxlen, ttl_ms, lease_ms, max_deliveries, dedup_window_ms, overflow })
}

// ---- writing -----------------------------------------------------------

// ---- reading -----------------------------------------------------------

/// A cursor over untrusted bytes: every read checks what is left first.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The format byte read, once `format()` ran.
    format: u8,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0, format: FORMAT }
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.pos).ok_or(DecodeError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn format(&mut self) -> Result<(), DecodeError> {
        match self.byte()? {
            f @ 1..=FORMAT => {
                self.format = f;
                Ok(())
            }
            _ => Err(DecodeError("unknown format")),
        }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        varint_at(self.bytes, &mut self.pos)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError(what))
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad optional flag")),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()?;
        // Check the claimed length against what is there before allocating.
        if len > self.remaining() as u64 {
            return Err(DecodeError("length past the end"));
        }
        let end = self.pos.checked_add(len as usize).ok_or(DecodeError("length past the end"))?;
        let slice = self.bytes.get(self.pos..end).ok_or(DecodeError("length past the end"))?;
        self.pos = end;
        Ok(slice)
    }

    fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        if self.flag()? {
            self.bytes().map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_varint(&mut self) -> Result<Option<u64>, DecodeError> {
        if self.flag()? {
            self.varint().map(Some)
        } else {
            Ok(None)
        }
    }

    fn envelope(&mut self) -> Result<EnvelopeRef, DecodeError> {
        if self.format > FIELDS_FORMAT {
            Envelope::from_bytes(self.bytes()?).ok_or(DecodeError("malformed envelope"))
        } else {
            self.envelope_fields()
        }
    }

    fn envelope_scanned(&mut self) -> Result<(EnvelopeRef, Scanned), DecodeError> {
        if self.format > FIELDS_FORMAT {
            Envelope::from_bytes_scanned(self.bytes()?).ok_or(DecodeError("malformed envelope"))
        } else {
            let env = self.envelope_fields()?;
            let scanned = Scanned::of(&env);
            Ok((env, scanned))
        }
    }

    fn envelope_fields(&mut self) -> Result<EnvelopeRef, DecodeError> {
        let id = MessageId { ms: self.varint()?, seq: self.varint()? };
        let from = self.bytes()?;
        let to = self.bytes()?;
        let ts = self.varint()?;
        let priority = self.byte()?;
        if priority > MAX_PRIORITY {
            return Err(DecodeError("priority out of range"));
        }
        let expires_at = self.opt_varint()?;
        let content_type = self.opt_bytes()?;
        let payload = self.bytes()?;
        let meta = self.opt_bytes()?;
        let thread = self.opt_bytes()?;
        let correlation = self.opt_bytes()?;
        let reply_to = self.opt_bytes()?;
        let via = if self.format >= 2 { self.opt_bytes()? } else { None };
        let confirm = if self.format >= 3 {
            match self.byte()? {
                0 => false,
                FLAG_CONFIRM => true,
                _ => return Err(DecodeError("unknown envelope flags")),
            }
        } else {
            false
        };
        Ok(Envelope::new(Parts {
            id,
            from,
            to,
            ts,
            priority,
            expires_at,
            content_type,
            payload,
            meta,
            thread,
            correlation,
            reply_to,
            via,
            confirm,
        }))
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests;
