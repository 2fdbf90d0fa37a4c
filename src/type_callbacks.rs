//! The `extern "C"` functions Redis calls for the `mailboxes` type. Each one only
//! converts pointers and hands over to `data_type.rs`.

use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_void};

use redis_module::raw;

use crate::core::Mailbox;
use crate::data_type::{self, RdbIn, RdbOut};

struct RdbReader(*mut raw::RedisModuleIO);

impl RdbIn for RdbReader {
    fn unsigned(&mut self) -> Option<u64> {
        raw::load_unsigned(self.0).ok()
    }

    fn buffer(&mut self) -> Option<Vec<u8>> {
        raw::load_string_buffer(self.0).ok().map(|b| b.as_ref().to_vec())
    }
}

struct RdbWriter(*mut raw::RedisModuleIO);

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
    let Some(emit) = raw::RedisModule_EmitAOF else { return };
    let command = c"MAILBOX.EFFECT";
    for effect in data_type::rewrite(mailbox) {
        let args = effect.to_args();
        // Every effect has one to a few fixed arguments plus ids: emit them as one
        // vector of buffers through the "sv" form is not available for buffers, so
        // build RedisModuleStrings and pass them with "sv".
        let strings: Vec<*mut raw::RedisModuleString> = args
            .iter()
            .map(|a| {
                raw::RedisModule_CreateString.unwrap()(
                    std::ptr::null_mut(),
                    a.as_ptr().cast::<c_char>(),
                    a.len(),
                )
            })
            .collect();
        emit(aof, command.as_ptr(), c"sv".as_ptr(), key, strings.as_ptr(), strings.len());
        for s in strings {
            raw::RedisModule_FreeString.unwrap()(std::ptr::null_mut(), s);
        }
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

unsafe fn log_io(rdb: *mut raw::RedisModuleIO, message: &str) {
    if let (Some(log), Ok(text)) = (raw::RedisModule_LogIOError, CString::new(message)) {
        log(rdb, c"warning".as_ptr(), c"%s".as_ptr(), text.as_ptr());
    }
}
