//! A message as stored: the immutable envelope (shared by every receiver of one
//! publish) and the per-mailbox delivery state around it.

#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::Arc;

use super::chunked::Keyed;
use super::id::MessageId;
use super::wire::varint_len;

/// What the sender sent plus what the server stamped. Never changes once stored;
/// shared through `EnvelopeRef` so one payload can serve many receivers of one key space.
///
/// One allocation holds it all (see `EnvelopeRef`): a flag byte, the
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

/// What `Envelope::from_bytes_scanned` learnt while checking an envelope's bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    /// `Envelope::content_bytes`.
    pub content_bytes: usize,
    /// Where `to` lies in `Envelope::as_bytes`.
    pub to: std::ops::Range<usize>,
}

impl Scanned {
    /// What a scan of `env` would learn (for envelopes not read from their bytes).
    pub fn of(env: &Envelope) -> Scanned {
        let (_, _, mut at) = env.tail();
        take_field(&env.0, &mut at);
        let to = take_field(&env.0, &mut at);
        Scanned { content_bytes: env.content_bytes(), to: at - to.len()..at }
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
#[inline(always)]
fn take_varint(bytes: &[u8], at: &mut usize) -> u64 {
    super::wire::take_varint(bytes, at).unwrap_or_default()
}

/// Moves `*at` past the varint there without reading its value: `None` unless it
/// is what `varint` in `Envelope::scan` accepts (at most 10 bytes, no overflow of
/// u64, no longer than needed). Up to 8 bytes are found in one word.
#[inline(always)]
fn skip_varint(bytes: &[u8], at: &mut usize) -> Option<()> {
    if let Some(&[b0, b1, b2, b3, b4, b5, b6, b7]) = bytes.get(*at..at.wrapping_add(8)) {
        let word = u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
        // The high bit of each byte that ends a varint.
        let ends = !word & 0x8080_8080_8080_8080;
        if ends != 0 {
            let len = ends.trailing_zeros() as usize / 8 + 1;
            // A last byte of 0 after others: longer than needed.
            if len > 1 && (word >> (8 * (len - 1))) as u8 == 0 {
                return None;
            }
            *at += len;
            return Some(());
        }
    }
    skip_varint_slow(bytes, at)
}

#[cold]
fn skip_varint_slow(bytes: &[u8], at: &mut usize) -> Option<()> {
    let rest = bytes.get(*at..)?;
    let len = rest.iter().take(10).position(|&b| b < 0x80)? + 1;
    let last = rest[len - 1];
    if (len > 1 && last == 0) || (len == 10 && last > 1) {
        return None;
    }
    *at += len;
    Some(())
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
    /// An envelope lives only behind its shared handle, so `new` gives that.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(parts: Parts<'_>) -> EnvelopeRef {
        let optional = parts.optional();
        let fields = [parts.from, parts.to, parts.payload].into_iter().chain(optional.into_iter().flatten());
        let size = 3
            + 8
            + varint_len(parts.id.seq)
            + varint_len(parts.ts)
            + parts.expires_at.map_or(0, varint_len)
            + fields.clone().map(|f| f.len() + varint_len(f.len() as u64)).sum::<usize>();
        // Written in place: the one allocation, no copy.
        let shared = prefixed(size, |out| {
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
        });
        EnvelopeRef::own(shared)
    }

    /// The bytes an envelope is stored as (what `from_bytes` takes back).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The envelope `bytes` hold, if they are exactly what `as_bytes` gives for some
    /// envelope: known flags, a priority of at most 9, varints as `new` writes them
    /// (no longer than needed), every field inside and nothing after the last one.
    pub fn from_bytes(bytes: &[u8]) -> Option<EnvelopeRef> {
        Self::from_bytes_scanned(bytes).map(|(env, _)| env)
    }

    /// `from_bytes`, with what its one pass over the bytes learnt (a load then
    /// walks them no more).
    pub fn from_bytes_scanned(bytes: &[u8]) -> Option<(EnvelopeRef, Scanned)> {
        let scanned = Self::scan(bytes)?;
        Some((EnvelopeRef::own(copied(bytes)), scanned))
    }

    /// What `from_bytes` checks, without the copy: `None` unless `bytes` are an
    /// envelope's, else what the one pass over them learnt.
    pub fn scan(bytes: &[u8]) -> Option<Scanned> {
        /// A varint no longer than needed: one byte, or a last byte that is not 0.
        #[inline(always)]
        fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
            let start = *at;
            let n = super::wire::take_varint(bytes, at)?;
            (*at == start + 1 || bytes.get(*at - 1).is_some_and(|&last| last != 0)).then_some(n)
        }
        let (&flags, &priority, &present) = (bytes.first()?, bytes.get(1)?, bytes.get(2)?);
        if flags & !(FLAG_CONFIRM | FLAG_EXPIRES) != 0 || priority > MAX_PRIORITY || present >> 6 != 0 {
            return None;
        }
        // The id's sequence comes after its 8-byte ms: a shorter buffer fails there.
        let mut at = SEQ_AT;
        let varints = if flags & FLAG_EXPIRES != 0 { 3 } else { 2 };
        for _ in 0..varints {
            skip_varint(bytes, &mut at)?;
        }
        let (mut content_bytes, mut to) = (0, 0..0);
        for field in 0..3 + present.count_ones() {
            let len = usize::try_from(varint(bytes, &mut at)?).ok()?;
            let end = at.checked_add(len).filter(|&end| end <= bytes.len())?;
            if field == 1 {
                to = at..end;
            }
            content_bytes += len;
            at = end;
        }
        (at == bytes.len()).then_some(Scanned { content_bytes, to })
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

    #[inline]
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

/// A shared envelope, one pointer wide: every held message keeps one, so a topic
/// message costs each receiver 8 bytes here where an `Arc<Envelope>` (a slice
/// pointer with its length) would cost 16.
///
/// It points at the envelope's length, the envelope's bytes following it. Two homes:
/// - an `Arc<[u8]>` of its own (made by `Envelope::new` and `from_bytes`): the
///   length in `LEN_BYTES` little-endian bytes, under `IN_BATCH`, or `u32::MAX`
///   then 8 more bytes for an envelope of 2 GiB or more. The length rebuilds the
///   slice pointer that `Arc` needs.
/// - a batch loaded from a dump (`Batch`): the length with `IN_BATCH` set, then
///   the length's offset from the batch's first byte, where the batch's share
///   count lives (`BatchHead`), written by the load. Each 4 bytes, little-endian.
pub struct EnvelopeRef(NonNull<u8>);

const LEN_BYTES: usize = 4;
const LONG_LEN_BYTES: usize = LEN_BYTES + 8;
/// Set in the length of an envelope that lies in a loaded batch.
const IN_BATCH: u32 = 1 << 31;
const IN_BATCH_LEN_BYTES: usize = LEN_BYTES + 4;

/// The length prefix for an envelope of `len` bytes: the first `.1` bytes of `.0`.
fn len_prefix(len: usize) -> ([u8; LONG_LEN_BYTES], usize) {
    let mut prefix = [0; LONG_LEN_BYTES];
    match u32::try_from(len) {
        Ok(short) if short < IN_BATCH => {
            prefix[..LEN_BYTES].copy_from_slice(&short.to_le_bytes());
            (prefix, LEN_BYTES)
        }
        _ => {
            prefix[..LEN_BYTES].copy_from_slice(&u32::MAX.to_le_bytes());
            prefix[LEN_BYTES..].copy_from_slice(&(len as u64).to_le_bytes());
            (prefix, LONG_LEN_BYTES)
        }
    }
}

/// One allocation: the length prefix, then a copy of `bytes` (nothing written twice).
fn copied(bytes: &[u8]) -> Arc<[u8]> {
    let (prefix, prefix_len) = len_prefix(bytes.len());
    let mut shared = Arc::<[u8]>::new_uninit_slice(prefix_len + bytes.len());
    // A new `Arc` is unique; were it not, the slower zero-filled way.
    let Some(out) = Arc::get_mut(&mut shared) else {
        return prefixed(bytes.len(), |out| out.copy_from_slice(bytes));
    };
    let (head, body) = out.split_at_mut(prefix_len);
    head.write_copy_of_slice(&prefix[..prefix_len]);
    body.write_copy_of_slice(bytes);
    // SAFETY: every byte of the slice was written just above.
    unsafe { shared.assume_init() }
}

/// One allocation: the length prefix for `len` bytes, then `len` bytes that `fill` writes.
fn prefixed(len: usize, fill: impl FnOnce(&mut [u8])) -> Arc<[u8]> {
    let (prefix, prefix_len) = len_prefix(len);
    // SAFETY: all zeros is a valid `[u8]`.
    let mut shared: Arc<[u8]> = unsafe { Arc::<[u8]>::new_zeroed_slice(prefix_len + len).assume_init() };
    // A new `Arc` is unique.
    if let Some(out) = Arc::get_mut(&mut shared) {
        let (head, body) = out.split_at_mut(prefix_len);
        head.copy_from_slice(&prefix[..prefix_len]);
        fill(body);
    }
    shared
}

// SAFETY: it owns a share of an `Arc<[u8]>` (which is `Send` and `Sync`) and
// only reads the bytes.
unsafe impl Send for EnvelopeRef {}
unsafe impl Sync for EnvelopeRef {}

impl EnvelopeRef {
    /// Takes over `stored`: a length prefix then exactly that many bytes.
    fn own(stored: Arc<[u8]>) -> EnvelopeRef {
        let raw = Arc::into_raw(stored).cast::<u8>().cast_mut();
        // `Arc::into_raw` never gives a null pointer.
        EnvelopeRef(NonNull::new(raw).unwrap_or(NonNull::dangling()))
    }

    /// The first 4 bytes of the prefix.
    #[inline(always)]
    fn word(&self, at: usize) -> u32 {
        // SAFETY: every prefix has at least `LEN_BYTES` bytes, and `at` is 4 only
        // for an in-batch prefix (8 bytes).
        u32::from_le_bytes(unsafe { self.0.as_ptr().add(at).cast::<[u8; 4]>().read() })
    }

    /// (prefix length, envelope length).
    #[inline]
    fn lens(&self) -> (usize, usize) {
        let short = self.word(0);
        if short < IN_BATCH {
            return (LEN_BYTES, short as usize);
        }
        if short != u32::MAX {
            return (IN_BATCH_LEN_BYTES, (short & !IN_BATCH) as usize);
        }
        // SAFETY: a `u32::MAX` prefix is followed by 8 more length bytes.
        let long = u64::from_le_bytes(unsafe { self.0.as_ptr().add(LEN_BYTES).cast::<[u8; 8]>().read() });
        (LONG_LEN_BYTES, long as usize)
    }

    /// The head of the batch this envelope lies in, if it lies in one.
    #[inline]
    fn batch(&self) -> Option<NonNull<BatchHead>> {
        let short = self.word(0);
        if short < IN_BATCH || short == u32::MAX {
            return None;
        }
        // SAFETY: an in-batch prefix holds its offset from the batch's first byte,
        // the head (checked by `Batch::envelope` when it made the first share).
        Some(unsafe { self.0.sub(self.word(LEN_BYTES) as usize) }.cast())
    }

    /// The slice pointer `Arc::into_raw` gave (for an envelope not in a batch).
    fn raw(&self) -> *const [u8] {
        let (prefix, len) = self.lens();
        std::ptr::slice_from_raw_parts(self.0.as_ptr(), prefix + len)
    }

    /// Both name one stored envelope.
    pub fn ptr_eq(a: &EnvelopeRef, b: &EnvelopeRef) -> bool {
        a.0 == b.0
    }
}

impl std::ops::Deref for EnvelopeRef {
    type Target = Envelope;

    #[inline]
    fn deref(&self) -> &Envelope {
        let (prefix, len) = self.lens();
        // SAFETY: the envelope's `len` bytes follow the prefix and live as long as
        // this share; `Envelope` is `repr(transparent)` over `[u8]`.
        unsafe {
            let bytes = std::ptr::slice_from_raw_parts(self.0.as_ptr().add(prefix), len);
            &*(bytes as *const Envelope)
        }
    }
}

impl Clone for EnvelopeRef {
    fn clone(&self) -> Self {
        if let Some(head) = self.batch() {
            // SAFETY: this share keeps the batch, and so its head, alive.
            unsafe { head.as_ref() }.refs.fetch_add(1, Ordering::Relaxed);
        } else {
            // SAFETY: `raw` is the pointer `Arc::into_raw` gave and this share keeps it alive.
            unsafe { Arc::increment_strong_count(self.raw()) };
        }
        EnvelopeRef(self.0)
    }
}

impl Drop for EnvelopeRef {
    fn drop(&mut self) {
        match self.batch() {
            // SAFETY: gives back this share of the batch, counted in its head.
            Some(head) => unsafe { BatchHead::release(head, 1) },
            // SAFETY: gives back this share, taken by `own` or `clone`.
            None => unsafe { drop(Arc::from_raw(self.raw())) },
        }
    }
}

// ---- envelopes shared where a load found them ---------------------------

/// The first bytes of a loaded batch once `Batch` owns it: how many envelopes
/// still point into it, and how to give the buffer back when none does.
#[repr(C)]
struct BatchHead {
    refs: AtomicUsize,
    len: usize,
    free: unsafe fn(NonNull<u8>, usize),
}

/// The bytes a saved batch leaves at its start for `BatchHead`.
pub const BATCH_HEAD_BYTES: usize = std::mem::size_of::<BatchHead>();

/// The count a batch's head starts at: the loader's share, which holds every
/// envelope it makes until `Batch` is dropped (so none costs an atomic add).
const LOADER_SHARE: usize = usize::MAX / 2;

impl BatchHead {
    /// Gives back `n` shares; the last one frees the buffer.
    ///
    /// # Safety
    /// `head` is a live batch's head and the caller holds the `n` shares.
    unsafe fn release(head: NonNull<BatchHead>, n: usize) {
        // SAFETY: the caller's shares keep the head alive until the count says otherwise.
        let this = unsafe { head.as_ref() };
        if this.refs.fetch_sub(n, Ordering::Release) == n {
            fence(Ordering::Acquire);
            let (len, free) = (this.len, this.free);
            // SAFETY: no share is left; `free` takes back what `Loaded` owned.
            unsafe { free(head.cast(), len) }
        }
    }
}

/// A buffer read whole from a dump, owned: what `Batch` shares envelopes out of.
pub struct Loaded {
    ptr: NonNull<u8>,
    len: usize,
    free: unsafe fn(NonNull<u8>, usize),
}

impl Loaded {
    /// Takes over a buffer.
    ///
    /// # Safety
    /// `ptr` owns `len` writable bytes that nothing else uses, and `free(ptr, len)`
    /// (from any thread) gives them back.
    pub unsafe fn from_raw(ptr: NonNull<u8>, len: usize, free: unsafe fn(NonNull<u8>, usize)) -> Loaded {
        if ptr.as_ptr().align_offset(std::mem::align_of::<BatchHead>()) == 0 {
            return Loaded { ptr, len, free };
        }
        // An allocator that gave fewer than 8-aligned bytes: one copy that is.
        // SAFETY: the caller's `len` bytes at `ptr`, given back right after the copy.
        let copy = Loaded::copy_of(unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) });
        // SAFETY: as the caller promised.
        unsafe { free(ptr, len) };
        copy
    }

    /// An owned copy of `bytes` (for loads that lend their buffers).
    pub fn copy_of(bytes: &[u8]) -> Loaded {
        let layout = copy_layout(bytes.len());
        // SAFETY: `layout` is never zero-sized.
        let Some(ptr) = NonNull::new(unsafe { std::alloc::alloc(layout) }) else {
            std::alloc::handle_alloc_error(layout)
        };
        // SAFETY: `ptr` has room for `bytes.len()` bytes, fresh, so not overlapping.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
        Loaded { ptr, len: bytes.len(), free: free_copy }
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` owns `len` bytes (see `from_raw`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // SAFETY: as `from_raw` was promised; nothing points into an unshared buffer.
        unsafe { (self.free)(self.ptr, self.len) }
    }
}

fn copy_layout(len: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(len.max(1), std::mem::align_of::<BatchHead>())
        .unwrap_or_else(|_| std::alloc::Layout::new::<BatchHead>())
}

/// Frees what `Loaded::copy_of` allocated.
unsafe fn free_copy(ptr: NonNull<u8>, len: usize) {
    // SAFETY: `copy_of` allocated `ptr` with this very layout.
    unsafe { std::alloc::dealloc(ptr.as_ptr(), copy_layout(len)) }
}

/// A loaded buffer whose envelopes are shared where they lie: one allocation for
/// a whole batch instead of one per message, freed when its last envelope goes.
/// Its first `BATCH_HEAD_BYTES` hold the head; the envelopes follow as
/// `put_in_batch` wrote them.
pub struct Batch {
    head: NonNull<BatchHead>,
    len: usize,
    /// Envelopes made so far, held by the loader's share until the drop.
    made: usize,
}

impl Batch {
    /// Starts sharing `loaded` (`None`, and freed, when it is too short for the head).
    pub fn new(loaded: Loaded) -> Option<Batch> {
        if loaded.len < BATCH_HEAD_BYTES {
            return None;
        }
        let loaded = std::mem::ManuallyDrop::new(loaded);
        let head = loaded.ptr.cast::<BatchHead>();
        let (len, free) = (loaded.len, loaded.free);
        // SAFETY: the buffer is aligned for the head (see `Loaded::from_raw`), long
        // enough, and owned: from here the head's count decides when it is freed.
        unsafe { head.as_ptr().write(BatchHead { refs: AtomicUsize::new(LOADER_SHARE), len, free }) };
        Some(Batch { head, len, made: 0 })
    }

    fn start(&self) -> *mut u8 {
        self.head.as_ptr().cast()
    }

    /// The bytes after the head.
    pub fn body(&self) -> &[u8] {
        // SAFETY: `len` bytes from the head, the head's own left out: nothing
        // writes them while the batch lives.
        unsafe { std::slice::from_raw_parts(self.start().add(BATCH_HEAD_BYTES), self.len - BATCH_HEAD_BYTES) }
    }

    /// The envelope whose prefix starts at `at` in `body()`, as `put_in_batch`
    /// wrote it: checked whole (see `Envelope::from_bytes`), shared in place (or
    /// copied, for one of 2 GiB or more), with what the check learnt and the offset
    /// just past it. `None` for anything else.
    pub fn envelope(&mut self, at: usize) -> Option<(EnvelopeRef, Scanned, usize)> {
        let body = self.body();
        let word =
            |i: usize| body.get(i..i.checked_add(4)?).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        let short = word(at)?;
        if short == u32::MAX {
            let len = body.get(at + LEN_BYTES..at + LONG_LEN_BYTES)?;
            let len = usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok()?;
            let start = at + LONG_LEN_BYTES;
            let end = start.checked_add(len)?;
            let (env, scanned) = Envelope::from_bytes_scanned(body.get(start..end)?)?;
            return Some((env, scanned, end));
        }
        if short < IN_BATCH || word(at + LEN_BYTES)? != 0 {
            return None;
        }
        let start = at + IN_BATCH_LEN_BYTES;
        let end = start.checked_add((short & !IN_BATCH) as usize)?;
        let scanned = Envelope::scan(body.get(start..end)?)?;
        let offset = BATCH_HEAD_BYTES + at;
        let offset_word = u32::try_from(offset).ok()?.to_le_bytes();
        self.made += 1;
        // SAFETY: `offset` is where the body held the prefix, inside the buffer; the
        // batch owns those bytes and nothing reads them but through this share.
        // Writing the offset there leads the share back to the head.
        let env = unsafe {
            let prefix = self.start().add(offset);
            std::ptr::copy_nonoverlapping(offset_word.as_ptr(), prefix.add(LEN_BYTES), 4);
            EnvelopeRef(NonNull::new_unchecked(prefix))
        };
        Some((env, scanned, end))
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: the loader's share, less the envelopes made from it, which now
        // each hold one of their own.
        unsafe { BatchHead::release(self.head, LOADER_SHARE - self.made) }
    }
}

/// How many bytes `put_in_batch` writes for `env`.
pub fn in_batch_len(env: &Envelope) -> usize {
    let len = env.as_bytes().len();
    len + if len < IN_BATCH as usize { IN_BATCH_LEN_BYTES } else { LONG_LEN_BYTES }
}

/// Appends `env` to a batch so that `Batch::envelope` can share it in place: its
/// length with `IN_BATCH`, 4 bytes of 0 (where the load writes the prefix's offset
/// in the batch), then its bytes. One of 2 GiB or more gets the long prefix
/// instead, and is copied at load.
pub fn put_in_batch(env: &Envelope, batch: &mut Vec<u8>) {
    let bytes = env.as_bytes();
    match u32::try_from(bytes.len()) {
        Ok(len) if len < IN_BATCH => {
            batch.extend_from_slice(&(len | IN_BATCH).to_le_bytes());
            batch.extend_from_slice(&[0; 4]);
        }
        _ => {
            batch.extend_from_slice(&u32::MAX.to_le_bytes());
            batch.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        }
    }
    batch.extend_from_slice(bytes);
}

impl PartialEq for EnvelopeRef {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for EnvelopeRef {}

impl std::fmt::Debug for EnvelopeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
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

impl State {
    /// The word replies use: `ready`, `leased` or `delayed`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Leased { .. } => "leased",
            State::Delayed { .. } => "delayed",
        }
    }
}

/// A message held by one mailbox: 24 bytes (the state's kind and deadline are
/// kept apart so that no enum padding is paid per message).
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub env: EnvelopeRef,
    /// The deadline of a leased or delayed message, else 0.
    until: u64,
    /// How many times a read has handed it out.
    pub deliveries: u32,
    /// 0 ready, 1 leased, 2 delayed.
    kind: u8,
}

impl Entry {
    pub fn new(env: EnvelopeRef, deliveries: u32, state: State) -> Entry {
        let mut entry = Entry { env, until: 0, deliveries, kind: 0 };
        entry.set_state(state);
        entry
    }

    /// A message never handed out.
    pub fn ready(env: EnvelopeRef) -> Entry {
        Entry { env, until: 0, deliveries: 0, kind: 0 }
    }

    pub fn state(&self) -> State {
        match self.kind {
            1 => State::Leased { until: self.until },
            2 => State::Delayed { until: self.until },
            _ => State::Ready,
        }
    }

    pub fn set_state(&mut self, state: State) {
        (self.kind, self.until) = match state {
            State::Ready => (0, 0),
            State::Leased { until } => (1, until),
            State::Delayed { until } => (2, until),
        };
    }
}

impl Keyed for Entry {
    type Key = MessageId;

    #[inline]
    fn key(&self) -> MessageId {
        self.env.id()
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("env", &self.env)
            .field("deliveries", &self.deliveries)
            .field("state", &self.state())
            .finish()
    }
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
    pub env: EnvelopeRef,
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

    #[test]
    fn a_held_message_costs_a_pointer_and_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<EnvelopeRef>(), 8);
        assert_eq!(std::mem::size_of::<Option<EnvelopeRef>>(), 8);
        assert_eq!(std::mem::size_of::<Entry>(), 24);
        let env = Envelope::new(Parts::default());
        for state in [State::Ready, State::Leased { until: u64::MAX }, State::Delayed { until: 0 }] {
            let entry = Entry::new(env.clone(), 7, state);
            assert_eq!((entry.state(), entry.deliveries), (state, 7));
        }
    }

    #[test]
    fn shares_are_counted_and_freed_with_the_last() {
        let env = Envelope::new(Parts { payload: b"once", ..Parts::default() });
        let copies: Vec<EnvelopeRef> = (0..100).map(|_| env.clone()).collect();
        assert!(copies.iter().all(|c| EnvelopeRef::ptr_eq(c, &env) && c.payload() == b"once"));
        let weak = Arc::downgrade(&unsafe_arc(&env));
        drop(copies);
        assert!(weak.upgrade().is_some());
        drop(env);
        assert!(weak.upgrade().is_none(), "the last share freed the envelope");
    }

    /// Another `Arc` share of the allocation behind `env` (test only).
    fn unsafe_arc(env: &EnvelopeRef) -> Arc<[u8]> {
        let clone = env.clone();
        let raw = clone.raw();
        std::mem::forget(clone);
        // SAFETY: `clone` gave up its share to this `Arc`.
        unsafe { Arc::from_raw(raw) }
    }

    /// Buffers freed by `counted_free`, for the batch tests (one test uses it).
    static FREED: AtomicUsize = AtomicUsize::new(0);

    unsafe fn counted_free(ptr: NonNull<u8>, len: usize) {
        FREED.fetch_add(1, Ordering::SeqCst);
        // SAFETY: `loaded` made it with `copy_of`.
        unsafe { free_copy(ptr, len) }
    }

    /// A batch as saved: the head left as 0, then each envelope as `put_in_batch` writes it.
    fn saved_batch(envs: &[&EnvelopeRef]) -> Vec<u8> {
        let mut out = vec![0; BATCH_HEAD_BYTES];
        for env in envs {
            put_in_batch(env, &mut out);
        }
        out
    }

    fn loaded(bytes: &[u8], free: unsafe fn(NonNull<u8>, usize)) -> Loaded {
        let copy = std::mem::ManuallyDrop::new(Loaded::copy_of(bytes));
        // SAFETY: `copy` owns its bytes and gave up freeing them.
        unsafe { Loaded::from_raw(copy.ptr, copy.len, free) }
    }

    /// Every envelope of the batch, shared in place, with the offset past the last.
    fn take_all(batch: &mut Batch) -> Option<(Vec<EnvelopeRef>, usize)> {
        let mut envs = Vec::new();
        let mut at = 0;
        while at < batch.body().len() {
            let (env, scanned, end) = batch.envelope(at)?;
            assert_eq!(scanned, Scanned::of(&env));
            envs.push(env);
            at = end;
        }
        Some((envs, at))
    }

    #[test]
    fn a_batch_shares_its_envelopes_in_place_and_goes_with_the_last() {
        let big = vec![9u8; 70_000];
        let originals = [
            Envelope::new(Parts {
                id: MessageId::new(1, 0),
                payload: b"one",
                to: b"bob",
                ..Parts::default()
            }),
            Envelope::new(Parts {
                id: MessageId::new(2, 300),
                payload: &big,
                expires_at: Some(7),
                ..Parts::default()
            }),
            Envelope::new(Parts { id: MessageId::new(u64::MAX >> 20, 0), ts: u64::MAX, ..Parts::default() }),
        ];
        let bytes = saved_batch(&originals.iter().collect::<Vec<_>>());
        let before = FREED.load(Ordering::SeqCst);
        let mut batch = Batch::new(loaded(&bytes, counted_free)).expect("long enough");
        let (envs, end) = take_all(&mut batch).expect("every envelope");
        assert_eq!(end, bytes.len() - BATCH_HEAD_BYTES);
        assert_eq!(envs, originals);
        let start = batch.start() as usize;
        for env in &envs {
            assert_eq!(env.lens().0, IN_BATCH_LEN_BYTES);
            let at = env.0.as_ptr() as usize;
            assert!(at > start && at < start + bytes.len(), "in the batch's own buffer");
        }
        assert!(batch.envelope(0).is_none(), "a prefix is taken once");
        // An envelope made, then dropped while the load goes on: the batch stays.
        let mut envs = envs;
        drop(envs.remove(0));
        let kept = envs[0].clone();
        drop(batch);
        drop(envs);
        assert_eq!(FREED.load(Ordering::SeqCst), before, "a share is left");
        let from_thread = std::thread::spawn(move || {
            let copy = kept.clone();
            drop(kept);
            copy
        })
        .join()
        .expect("thread");
        assert_eq!(from_thread.payload(), &big[..]);
        assert_eq!(FREED.load(Ordering::SeqCst), before, "a share is left");
        drop(from_thread);
        assert_eq!(FREED.load(Ordering::SeqCst), before + 1, "the last share freed the buffer");

        // A batch nothing was taken from goes at once.
        drop(Batch::new(loaded(&bytes, counted_free)).expect("long enough"));
        assert_eq!(FREED.load(Ordering::SeqCst), before + 2);
        // So does a buffer too short for the head.
        assert!(Batch::new(loaded(&bytes[..BATCH_HEAD_BYTES - 1], counted_free)).is_none());
        assert_eq!(FREED.load(Ordering::SeqCst), before + 3);
    }

    #[test]
    fn a_batch_takes_only_what_save_writes() {
        let env = Envelope::new(Parts { id: MessageId::new(3, 4), payload: b"x", ..Parts::default() });
        let good = saved_batch(&[&env]);
        let take = |bytes: &[u8]| {
            let mut batch = Batch::new(Loaded::copy_of(bytes)).expect("long enough");
            take_all(&mut batch).map(|(envs, _)| envs)
        };
        assert_eq!(take(&good), Some(vec![env.clone()]));
        let at = BATCH_HEAD_BYTES;
        let patched = |i: usize, b: u8| {
            let mut bad = good.clone();
            bad[i] = b;
            bad
        };
        assert_eq!(take(&patched(at + 4, 1)), None, "the offset's room is not 0");
        assert_eq!(take(&patched(at + 3, 0)), None, "no IN_BATCH bit");
        assert_eq!(take(&patched(at, good[at] + 1)), None, "a length past the end");
        assert_eq!(take(&patched(at + 8, 0x80)), None, "unknown flags");
        assert_eq!(take(&good[..good.len() - 1]), None, "cut short");
        assert_eq!(take(&[&good[..], &[0]].concat()), None, "a byte too many");

        // The long prefix (what an envelope of 2 GiB or more gets): copied.
        let long = [
            &[0; BATCH_HEAD_BYTES][..],
            &u32::MAX.to_le_bytes(),
            &(env.as_bytes().len() as u64).to_le_bytes(),
            env.as_bytes(),
        ]
        .concat();
        let copied = take(&long).expect("loads").remove(0);
        assert_eq!((copied.lens().0, copied.batch(), &copied), (LEN_BYTES, None, &env));
    }

    #[test]
    fn skipping_a_varint_accepts_what_reading_it_does() {
        let mut cases: Vec<Vec<u8>> =
            vec![vec![], vec![0x80], vec![0x80, 0], vec![0xff; 11], vec![0x85, 0x80, 0x00]];
        for n in [0, 1, 127, 128, 300, 1 << 35, u64::MAX >> 1, u64::MAX] {
            let mut v = Vec::new();
            super::super::wire::put_varint(&mut v, n);
            cases.push(v.clone());
            v.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
            cases.push(v);
        }
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        cases.push(overflow);
        for bytes in cases {
            let (mut a, mut b) = (0, 0);
            let strict = |bytes: &[u8], at: &mut usize| {
                let start = *at;
                let n = super::super::wire::take_varint(bytes, at)?;
                (*at == start + 1 || bytes[*at - 1] != 0).then_some(n)
            };
            let skipped = skip_varint(&bytes, &mut a).is_some();
            assert_eq!(skipped, strict(&bytes, &mut b).is_some(), "{bytes:?}");
            if skipped {
                assert_eq!(a, b, "{bytes:?}");
            }
        }
    }

    #[test]
    fn the_long_length_prefix_reads_back() {
        let (short, n) = len_prefix(5);
        assert_eq!(&short[..n], 5u32.to_le_bytes());
        let (long, n) = len_prefix(u32::MAX as usize);
        assert_eq!((&long[..LEN_BYTES], n), (&u32::MAX.to_le_bytes()[..], LONG_LEN_BYTES));
        assert_eq!(u64::from_le_bytes(long[LEN_BYTES..].try_into().unwrap()), u32::MAX as u64);
        // A short envelope behind the long prefix (what a 4 GiB one would have).
        let env = Envelope::new(Parts { payload: b"far", ..Parts::default() });
        let stored =
            [&u32::MAX.to_le_bytes()[..], &(env.as_bytes().len() as u64).to_le_bytes(), env.as_bytes()]
                .concat();
        let long = EnvelopeRef::own(Arc::from(stored));
        assert_eq!((long.lens().0, long.payload()), (LONG_LEN_BYTES, &b"far"[..]));
        assert_eq!(long, env);
    }
}
