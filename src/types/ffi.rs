//! The two module data types as Redis sees them: their statics (`MAILBOX_TYPE`,
//! `NAMESPACE_TYPE`) and the `extern "C"` functions Redis calls for them. Each
//! function only converts pointers and hands over to `types/mailbox.rs` (or, in
//! `ns`, to `types/namespace.rs`).

#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr::NonNull;

use redis_module::{native_types::RedisType, raw};

use crate::core::{Loaded, Mailbox};
use crate::effects::EFFECT_COMMAND;
use crate::types::mailbox as mailbox_type;
use crate::types::rdb::{RdbIn, RdbOut};

/// Exactly 9 characters, and never to be renamed: saved files name it.
pub static MAILBOX_TYPE: RedisType = RedisType::new(
    "mailboxes",
    mailbox_type::ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        mem_usage: Some(mem_usage),
        digest: Some(digest),
        free: Some(free),
        aux_load: None,
        aux_save: None,
        aux_save2: None,
        aux_save_triggers: 0,
        free_effort: Some(free_effort),
        unlink: None,
        copy: Some(copy),
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    },
);

/// Exactly 9 characters, and never to be renamed: saved files name it.
pub static NAMESPACE_TYPE: RedisType = RedisType::new(
    "mailboxns",
    crate::types::namespace::ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(ns::rdb_load),
        rdb_save: Some(ns::rdb_save),
        aof_rewrite: Some(ns::aof_rewrite),
        mem_usage: Some(ns::mem_usage),
        digest: Some(ns::digest),
        free: Some(ns::free),
        aux_load: None,
        aux_save: None,
        aux_save2: None,
        aux_save_triggers: 0,
        free_effort: Some(ns::free_effort),
        unlink: None,
        copy: Some(ns::copy),
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    },
);

pub(crate) struct RdbReader(pub(crate) *mut raw::RedisModuleIO);

impl RdbIn for RdbReader {
    fn unsigned(&mut self) -> Option<u64> {
        raw::load_unsigned(self.0).ok()
    }

    fn buffer(&mut self) -> Option<Vec<u8>> {
        raw::load_string_buffer(self.0).ok().map(|b| b.as_ref().to_vec())
    }

    fn with_buffer<R>(&mut self, read: impl FnOnce(&[u8]) -> R) -> Option<R> {
        raw::load_string_buffer(self.0).ok().map(|b| read(b.as_ref()))
    }

    fn loaded(&mut self) -> Option<Loaded> {
        /// Gives back what `RedisModule_LoadStringBuffer` allocated.
        unsafe fn free(ptr: NonNull<u8>, _len: usize) {
            // SAFETY: the module API is filled in before any load.
            if let Some(free) = unsafe { raw::RedisModule_Free } {
                // SAFETY: `ptr` came from `RedisModule_LoadStringBuffer`, freed once.
                unsafe { free(ptr.as_ptr().cast()) }
            }
        }
        // SAFETY: the module API is filled in before any load.
        let load = unsafe { raw::RedisModule_LoadStringBuffer }?;
        let mut len = 0;
        // SAFETY: `self.0` is the IO handle of the load in progress.
        let ptr = unsafe { load(self.0, &mut len) };
        let ptr = NonNull::new(ptr.cast::<u8>());
        if raw::is_io_error(self.0) {
            // SAFETY: whatever was allocated before the error is this load's to free.
            return ptr.map(|p| unsafe { free(p, len) }).and(None);
        }
        // SAFETY: Redis allocated `len` bytes for this caller alone, freed by `RedisModule_Free`.
        ptr.map(|p| unsafe { Loaded::from_raw(p, len, free) })
    }

    fn key_name(&self) -> Option<Vec<u8>> {
        // SAFETY: reading a function pointer the module API filled in at load.
        let get = unsafe { raw::RedisModule_GetKeyNameFromIO }?;
        // SAFETY: `self.0` is the IO handle of the load in progress.
        let name = unsafe { get(self.0) };
        if name.is_null() {
            return None;
        }
        let mut len = 0;
        // SAFETY: `name` is a live Redis string (checked non-null above).
        let ptr = unsafe { raw::RedisModule_StringPtrLen?(name, &mut len) };
        // SAFETY: Redis gave `len` bytes at `ptr`, alive as long as `name`; copied at once.
        (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }.to_vec())
    }
}

pub(crate) struct RdbWriter(pub(crate) *mut raw::RedisModuleIO);

impl RdbOut for RdbWriter {
    fn unsigned(&mut self, value: u64) {
        raw::save_unsigned(self.0, value);
    }

    fn buffer(&mut self, bytes: &[u8]) {
        raw::save_slice(self.0, bytes);
    }
}

/// # Safety
/// Called by Redis with a valid IO handle.
pub unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    if encver > mailbox_type::ENCODING_VERSION {
        log_io(
            rdb,
            &format!(
            "mailbox: refusing a mailbox saved with encoding version {encver}; this module reads up to {}",
            mailbox_type::ENCODING_VERSION
        ),
        );
        return std::ptr::null_mut();
    }
    match mailbox_type::load(&mut RdbReader(rdb), encver) {
        Some(mailbox) => {
            mailbox_type::gauge_add(&mailbox);
            Box::into_raw(Box::new(mailbox)).cast()
        }
        None => {
            log_io(rdb, "mailbox: a saved mailbox is corrupt or truncated; refusing it");
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// Called by Redis with a valid IO handle and a value of this type.
pub unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    let mailbox = &*value.cast::<Mailbox>();
    mailbox_type::save(mailbox, &mut RdbWriter(rdb));
}

/// # Safety
/// Called by Redis with a valid IO handle, key and value of this type.
pub unsafe extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    let mailbox = &*value.cast::<Mailbox>();
    for effect in mailbox_type::rewrite(mailbox) {
        emit_aof(aof, key, &effect.to_args());
    }
}

/// Writes `MAILBOX.EFFECT <key> <args...>` to the rewritten AOF.
pub(crate) unsafe fn emit_aof(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    args: &[Vec<u8>],
) {
    let (Some(emit), Some(create), Some(free)) =
        (raw::RedisModule_EmitAOF, raw::RedisModule_CreateString, raw::RedisModule_FreeString)
    else {
        return;
    };
    // "sv": the key, then a vector of RedisModuleStrings with its length.
    let strings: Vec<*mut raw::RedisModuleString> =
        args.iter().map(|a| create(std::ptr::null_mut(), a.as_ptr().cast::<c_char>(), a.len())).collect();
    emit(aof, EFFECT_COMMAND.as_ptr(), c"sv".as_ptr(), key, strings.as_ptr(), strings.len());
    for s in strings {
        free(std::ptr::null_mut(), s);
    }
}

/// # Safety
/// Called by Redis with a value of this type.
pub unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    (*value.cast::<Mailbox>()).mem_usage()
}

/// # Safety
/// Called by Redis with a valid digest handle and a value of this type.
pub unsafe extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    let mailbox = &*value.cast::<Mailbox>();
    let (Some(add), Some(end)) = (raw::RedisModule_DigestAddStringBuffer, raw::RedisModule_DigestEndSequence)
    else {
        return;
    };
    mailbox_type::digest_parts(mailbox, |bytes| {
        add(md, bytes.as_ptr().cast::<c_char>().cast_mut(), bytes.len());
    });
    end(md);
}

/// # Safety
/// Called by Redis (possibly on its lazy-free thread) with a value of this type.
pub unsafe extern "C" fn free(value: *mut c_void) {
    let mailbox = Box::from_raw(value.cast::<Mailbox>());
    mailbox_type::gauge_remove(&mailbox);
    drop(mailbox);
}

/// # Safety
/// Called by Redis with a value of this type.
pub unsafe extern "C" fn free_effort(_key: *mut raw::RedisModuleString, value: *const c_void) -> usize {
    (*value.cast::<Mailbox>()).free_effort()
}

/// # Safety
/// Called by Redis for `COPY` with a value of this type.
pub unsafe extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    let copy = (*value.cast::<Mailbox>()).clone();
    mailbox_type::gauge_add(&copy);
    Box::into_raw(Box::new(copy)).cast()
}

pub(crate) unsafe fn log_io(rdb: *mut raw::RedisModuleIO, message: &str) {
    if let (Some(log), Ok(text)) = (raw::RedisModule_LogIOError, CString::new(message)) {
        log(rdb, c"warning".as_ptr(), c"%s".as_ptr(), text.as_ptr());
    }
}

/// The same entry points for the `mailboxns` type.
pub mod ns {
    use std::os::raw::{c_char, c_int, c_void};

    use redis_module::raw;

    use super::{emit_aof, log_io, RdbReader, RdbWriter};
    use crate::core::namespace::Namespace;
    use crate::types::namespace as namespace_type;

    /// # Safety
    /// Called by Redis with a valid IO handle.
    pub unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
        match namespace_type::load(&mut RdbReader(rdb), encver) {
            Some(ns) => Box::into_raw(Box::new(ns)).cast(),
            None => {
                log_io(
                    rdb,
                    &format!("mailbox: refusing a namespace (encoding version {encver}): corrupt or unknown"),
                );
                std::ptr::null_mut()
            }
        }
    }

    /// # Safety
    /// Called by Redis with a valid IO handle and a value of this type.
    pub unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
        namespace_type::save(&*value.cast::<Namespace>(), &mut RdbWriter(rdb));
    }

    /// # Safety
    /// Called by Redis with a valid IO handle, key and value of this type.
    pub unsafe extern "C" fn aof_rewrite(
        aof: *mut raw::RedisModuleIO,
        key: *mut raw::RedisModuleString,
        value: *mut c_void,
    ) {
        for effect in namespace_type::rewrite(&*value.cast::<Namespace>()) {
            emit_aof(aof, key, &effect.to_args());
        }
    }

    /// # Safety
    /// Called by Redis with a value of this type.
    pub unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
        (*value.cast::<Namespace>()).mem_usage()
    }

    /// # Safety
    /// Called by Redis with a valid digest handle and a value of this type.
    pub unsafe extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
        let (Some(add), Some(end)) =
            (raw::RedisModule_DigestAddStringBuffer, raw::RedisModule_DigestEndSequence)
        else {
            return;
        };
        namespace_type::digest_parts(&*value.cast::<Namespace>(), |bytes| {
            add(md, bytes.as_ptr().cast::<c_char>().cast_mut(), bytes.len());
        });
        end(md);
    }

    /// # Safety
    /// Called by Redis (possibly on its lazy-free thread) with a value of this type.
    pub unsafe extern "C" fn free(value: *mut c_void) {
        drop(Box::from_raw(value.cast::<Namespace>()));
    }

    /// # Safety
    /// Called by Redis with a value of this type.
    pub unsafe extern "C" fn free_effort(_key: *mut raw::RedisModuleString, value: *const c_void) -> usize {
        (*value.cast::<Namespace>()).free_effort()
    }

    /// # Safety
    /// Called by Redis for `COPY` with a value of this type.
    pub unsafe extern "C" fn copy(
        _from: *mut raw::RedisModuleString,
        _to: *mut raw::RedisModuleString,
        value: *const c_void,
    ) -> *mut c_void {
        Box::into_raw(Box::new((*value.cast::<Namespace>()).clone())).cast()
    }
}
