//! The `extern "C"` functions Redis calls for the `mailboxes` type. Each one only
//! converts pointers and hands over to `data_type.rs`.

use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_void};

use redis_module::raw;

use crate::core::Mailbox;
use crate::data_type::{self, RdbIn, RdbOut};

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

    fn key_name(&self) -> Option<Vec<u8>> {
        let get = unsafe { raw::RedisModule_GetKeyNameFromIO }?;
        let name = unsafe { get(self.0) };
        if name.is_null() {
            return None;
        }
        let mut len = 0;
        let ptr = unsafe { raw::RedisModule_StringPtrLen?(name, &mut len) };
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
    if encver > data_type::ENCODING_VERSION {
        log_io(
            rdb,
            &format!(
            "mailbox: refusing a mailbox saved with encoding version {encver}; this module reads up to {}",
            data_type::ENCODING_VERSION
        ),
        );
        return std::ptr::null_mut();
    }
    match data_type::load(&mut RdbReader(rdb), encver) {
        Some(mailbox) => {
            data_type::gauge_add(&mailbox);
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
    data_type::save(mailbox, &mut RdbWriter(rdb));
}

/// # Safety
/// Called by Redis with a valid IO handle, key and value of this type.
pub unsafe extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    let mailbox = &*value.cast::<Mailbox>();
    for effect in data_type::rewrite(mailbox) {
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
    emit(aof, c"MAILBOX.EFFECT".as_ptr(), c"sv".as_ptr(), key, strings.as_ptr(), strings.len());
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
    data_type::digest_parts(mailbox, |bytes| {
        add(md, bytes.as_ptr().cast::<c_char>().cast_mut(), bytes.len());
    });
    end(md);
}

/// # Safety
/// Called by Redis (possibly on its lazy-free thread) with a value of this type.
pub unsafe extern "C" fn free(value: *mut c_void) {
    let mailbox = Box::from_raw(value.cast::<Mailbox>());
    data_type::gauge_remove(&mailbox);
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
    data_type::gauge_add(&copy);
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
    use crate::namespace_type;

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
