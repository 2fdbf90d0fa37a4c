//! Command handlers: parse, call the services, reply. One file per command or family
//! of commands (`publish.rs`: PUBLISH and BROADCAST; `sub.rs`: SUB, UNSUB, SUBS),
//! each with its handler and its `Meta`; this file holds the `Meta` type and the
//! argument helper they share.

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

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisResult, RedisString};

pub type Handler = fn(&Context, Vec<RedisString>) -> RedisResult;

/// What the server is told about a command, kept beside its handler: registration
/// (name, handler, flags, key position) and `COMMAND INFO` (arity, summary, key spec).
pub struct Meta {
    pub name: &'static str,
    pub handler: Handler,
    pub flags: &'static str,
    /// Position of the command's one key, 0 when it has none.
    pub key: i32,
    pub arity: i32,
    pub summary: &'static str,
    /// What the command does to its key: Redis ACL key permissions apply by it
    /// (write-only access to a mailbox can send to it, not read it), and cluster
    /// clients route by it. `None` for a command without a key.
    pub key_spec: Option<KeySpecFlags>,
    /// A container's subcommands, each registered with its own flags and key
    /// position (`name` is the subcommand's word); the container itself has no handler.
    pub subcommands: &'static [Meta],
}

pub type Args<'a> = Vec<&'a [u8]>;

/// The raw bytes of every argument after the command name.
pub fn arg_slices(args: &[RedisString]) -> Args<'_> {
    args.iter().skip(1).map(RedisString::as_slice).collect()
}
