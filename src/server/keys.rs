//! Typed access to keys: the mailbox or namespace a key holds, `WRONGTYPE` when it
//! holds something else.

use redis_module::key::RedisKeyWritable;
use redis_module::RedisError;

use crate::core::namespace::Namespace;
use crate::core::Mailbox;
use crate::errors;
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
