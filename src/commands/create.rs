//! `MAILBOX.CREATE mailbox [MAXLEN n] [TTL ms] [LEASE ms] [MAXDELIVER n] [DEDUPWINDOW ms] [UPDATE]`

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access;
use crate::args::{self, CreateOptions};
use crate::config;
use crate::core::grants::Permission;
use crate::core::Settings;
use crate::effects::Effect;
use crate::errors;
use crate::errors::err;
use crate::server::context::now_ms;
use crate::server::keys::mailbox_mut;
use crate::server::replicate::replicate;
use crate::server::signal::notify;

/// How the server knows `MAILBOX.CREATE`.
pub const META: Meta = Meta {
    name: "mailbox.create",
    handler: command,
    flags: "write deny-oom",
    key: 1,
    arity: -2,
    summary: "Creates a mailbox or changes its settings",
    key_spec: Some(KeySpecFlags::READ_WRITE.union(KeySpecFlags::INSERT)),
    subcommands: &[],
};

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 2 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    access::check_name(ctx, all[0])?;
    let opts = args::parse_create(&all[1..]).map_err(err)?;
    let agent = ctx.get_current_user();
    access::authorize(ctx, agent.as_slice(), Permission::Admin, all[0], "mailbox.create")?;
    let key = ctx.open_key_writable(&argv[1]);
    match mailbox_mut(&key)? {
        Some(_) if !opts.update => Err(RedisError::Str(errors::MAILBOX_EXISTS)),
        Some(mailbox) => {
            let settings = apply(mailbox.settings, &opts);
            let effect = Effect::Init { settings, last_id: mailbox.last_id };
            replicate(ctx, all[0], &effect);
            effect.apply(mailbox);
            notify(ctx, c"mailbox.create", &argv[1]);
            Ok(RedisValue::SimpleStringStatic("OK"))
        }
        None => {
            crate::delivery::create(ctx, &key, all[0], apply(config::default_settings(), &opts))?;
            crate::delivery::touch(ctx, all[0], agent.as_slice(), now_ms());
            notify(ctx, c"mailbox.create", &argv[1]);
            Ok(RedisValue::SimpleStringStatic("OK"))
        }
    }
}

fn apply(mut settings: Settings, opts: &CreateOptions) -> Settings {
    if let Some(v) = opts.maxlen {
        settings.maxlen = v;
    }
    if let Some(v) = opts.ttl_ms {
        settings.ttl_ms = v;
    }
    if let Some(v) = opts.lease_ms {
        settings.lease_ms = v;
    }
    if let Some(v) = opts.max_deliveries {
        settings.max_deliveries = v;
    }
    if let Some(v) = opts.dedup_window_ms {
        settings.dedup_window_ms = v;
    }
    if let Some(v) = opts.overflow {
        settings.overflow = v;
    }
    settings
}
