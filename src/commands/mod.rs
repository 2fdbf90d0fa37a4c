//! Command handlers: parse, call the core, replicate the effects, reply. One file
//! per command; this file holds what they share.

#![forbid(unsafe_code)]

pub mod ack;
pub mod acl;
pub mod create;
pub mod dead;
pub mod effect;
pub mod info;
pub mod nack;
pub mod peek;
pub mod presence;
pub mod publish;
pub mod read;
pub mod reply;
pub mod send;
pub mod stats;
pub mod status;
pub mod sub;
pub mod thread;

use redis_module::RedisString;

pub type Args<'a> = Vec<&'a [u8]>;

/// The raw bytes of every argument after the command name.
pub fn arg_slices(args: &[RedisString]) -> Args<'_> {
    args.iter().skip(1).map(RedisString::as_slice).collect()
}
