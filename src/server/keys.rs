//! Typed access to keys: the mailbox or namespace a key holds, `WRONGTYPE` when it
//! holds something else, for writing (`*_mut`) or only reading (`read_*`).

use redis_module::key::RedisKeyWritable;
use redis_module::{Context, RedisError, RedisString};

use crate::core::names;
use crate::core::namespace::Namespace;
use crate::core::Mailbox;
use crate::errors;
use crate::server::context::rstring;
use crate::types::ffi::{MAILBOX_TYPE, NAMESPACE_TYPE};

/// The mailbox stored at an open key: `Ok(None)` when the key is empty,
/// `WRONGTYPE` when it holds something else.
pub fn mailbox_mut(key: &RedisKeyWritable) -> Result<Option<&mut Mailbox>, RedisError> {
    key.get_value::<Mailbox>(&MAILBOX_TYPE).map_err(|_| RedisError::Str(errors::WRONGTYPE))
}

/// The namespace stored at an open key, as `mailbox_mut`.
pub fn namespace_mut(key: &RedisKeyWritable) -> Result<Option<&mut Namespace>, RedisError> {
    key.get_value::<Namespace>(&NAMESPACE_TYPE).map_err(|_| RedisError::Str(errors::WRONGTYPE))
}

/// Runs `read` on the mailbox at `name`, opened only for reading (`None` when the
/// key is empty); `WRONGTYPE` when the key holds something else.
pub fn read_mailbox<R>(
    ctx: &Context,
    name: &RedisString,
    read: impl FnOnce(Option<&Mailbox>) -> R,
) -> Result<R, RedisError> {
    let key = ctx.open_key(name);
    let mailbox = key.get_value::<Mailbox>(&MAILBOX_TYPE).map_err(|_| RedisError::Str(errors::WRONGTYPE))?;
    Ok(read(mailbox))
}

/// Runs `read` on the namespace of `name` (a mailbox, topic or namespace name),
/// opened only for reading, as `read_mailbox`.
pub fn read_namespace<R>(
    ctx: &Context,
    name: &[u8],
    read: impl FnOnce(Option<&Namespace>) -> R,
) -> Result<R, RedisError> {
    let key = ctx.open_key(&rstring(ctx, names::namespace_key(name)));
    let ns = key.get_value::<Namespace>(&NAMESPACE_TYPE).map_err(|_| RedisError::Str(errors::WRONGTYPE))?;
    Ok(read(ns))
}
