//! `MAILBOX.SEND mailbox payload [options]`

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access::{self, Caller};
use crate::args::{self, SendOptions};
use crate::core::grants::Permission;
use crate::core::{Mailbox, MessageId};
use crate::delivery::{admit, check_payload, count_thread, envelope, push_ephemeral, send_one, touch};
use crate::errors::err;
use crate::server::context::now_ms;
use crate::server::reply::reply_bulk;
use crate::types::ffi::MAILBOX_TYPE;

/// How the server knows `MAILBOX.SEND`.
pub const META: Meta = Meta {
    name: "mailbox.send",
    handler: command,
    flags: "write deny-oom",
    key: 1,
    arity: -3,
    summary: "Sends a message to a mailbox",
    key_spec: Some(KeySpecFlags::READ_WRITE.union(KeySpecFlags::INSERT)),
    subcommands: &[],
};

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    let (name, payload) = (all[0], all[1]);
    access::check_name(ctx, name)?;
    let opts = args::parse_send(&all[2..]).map_err(err)?;
    let caller = access::caller(ctx, name, opts.as_agent.as_deref(), "mailbox.send")?;
    access::authorize(ctx, &caller.agent, Permission::Send, name, "mailbox.send")?;
    access::authorize_options(ctx, name, &caller, &opts, "mailbox.send")?;
    let opts = opts.dedup_scoped_to(&caller.agent);
    check_payload(payload, &opts)?;
    let now = now_ms();
    admit(ctx, name, &caller.agent, opts.thread.as_deref(), now)?;
    if opts.ephemeral {
        return send_ephemeral(ctx, &argv[1], payload, opts, &caller, now);
    }
    let thread = opts.thread.clone();
    let sent = send_one(ctx, &argv[1], payload, opts, &caller, now);
    crate::receipts::flush(ctx);
    let id = sent?;
    count_thread(ctx, name, thread.as_deref());
    touch(ctx, name, &caller.agent, now);
    reply_bulk(ctx, id.text(&mut [0; 41]));
    Ok(RedisValue::NoReply)
}

/// `EPHEMERAL`: pushed on the mailbox's channel, never stored nor replicated as
/// data; replies `[id, listeners]`. The id is what the next stored message could
/// have had, so it still sorts in time.
fn send_ephemeral(
    ctx: &Context,
    key_name: &RedisString,
    payload: &[u8],
    opts: SendOptions,
    caller: &Caller,
    now: u64,
) -> RedisResult {
    let last = {
        let key = ctx.open_key(key_name);
        match key.get_value::<Mailbox>(&MAILBOX_TYPE) {
            Ok(Some(mb)) => mb.last_id,
            _ => MessageId::MIN,
        }
    };
    let id = crate::ids::new_id(last, now)?;
    let env = envelope(id, key_name.as_slice(), payload, opts, caller, 0, now);
    Ok(push_ephemeral(ctx, &env, [key_name.as_slice()], &caller.agent, now))
}
