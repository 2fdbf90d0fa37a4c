//! What a command learns from the server and its context: the clock, the role
//! (master, replica, replaying), cluster mode, the selected database, and Redis
//! strings made from any bytes.

use redis_module::{raw, Context, ContextFlags, RedisError, RedisString};

use crate::errors;

/// A Redis string of any bytes. (The crate's `Context::create_string` goes
/// through a C string and panics on a NUL byte, which a client may well send.)
pub fn rstring(ctx: &Context, bytes: impl AsRef<[u8]>) -> RedisString {
    RedisString::create_from_slice(ctx.ctx, bytes.as_ref())
}

/// The server's clock in milliseconds.
pub fn now_ms() -> u64 {
    // SAFETY: the module API is initialised before any command or timer runs;
    // `Milliseconds` takes no arguments.
    let now = unsafe { raw::RedisModule_Milliseconds.map_or(0, |f| f()) };
    u64::try_from(now).unwrap_or(0)
}

/// Whether the server runs in cluster mode (`cluster-enabled`, fixed at start):
/// read once, not on every command.
pub fn in_cluster(ctx: &Context) -> bool {
    static CLUSTER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CLUSTER.get_or_init(|| ctx.get_flags().contains(ContextFlags::CLUSTER))
}

/// Whether this server decides time-driven changes (lease expiry, TTL): only a
/// master does; a replica waits for the master's effects.
pub fn is_master(ctx: &Context) -> bool {
    ctx.get_flags().contains(ContextFlags::MASTER)
}

/// For the writing subcommands of commands that also read (`MAILBOX.ACL`,
/// `MAILBOX.DEAD`): those are registered without the `write` flag so that their
/// reading forms run on replicas, and refuse to write there themselves.
pub fn require_master(ctx: &Context) -> Result<(), RedisError> {
    if is_master(ctx) || replaying(ctx) {
        Ok(())
    } else {
        Err(RedisError::Str(errors::READONLY))
    }
}

/// Whether this command replays what a master already decided: a replicated
/// command or one loaded from the AOF. Such a command must not read the clock, the
/// configs or the current user again.
pub fn replaying(ctx: &Context) -> bool {
    ctx.get_flags().intersects(ContextFlags::REPLICATED | ContextFlags::LOADING)
}

/// The database the context has selected.
pub fn selected_db(ctx: &Context) -> i32 {
    // SAFETY: `ctx.ctx` is the live context of the running callback.
    unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |f| f(ctx.ctx)) }
}

/// Selects database `db` for the rest of the callback; false if it does not exist.
pub fn select_db(ctx: &Context, db: i32) -> bool {
    // SAFETY: `ctx.ctx` is the live context of the running callback.
    let status = unsafe { raw::RedisModule_SelectDb.map_or(1, |f| f(ctx.ctx, db)) };
    status == raw::Status::Ok as std::os::raw::c_int
}
