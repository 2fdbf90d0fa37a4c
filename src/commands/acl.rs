//! `MAILBOX.ACL GRANT|REVOKE|LIST|CHECK|QUOTA`: the module's grants, kept in the
//! namespace key of the name pattern they cover. Each is a subcommand of its own
//! (`mailbox.acl|grant`, ...) with its own flags: GRANT, REVOKE and QUOTA write;
//! LIST and CHECK only read one namespace key, and run on replicas. GRANT, REVOKE
//! and LIST take a trailing `AS agent`.

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access;
use crate::args;
use crate::config;
use crate::core::grants::{Grant, Permission};
use crate::delivery::{ns_apply, touch, with_namespace};
use crate::effects::NsEffect;
use crate::errors;
use crate::errors::err;
use crate::server::context::now_ms;
use crate::server::context::require_master;
use crate::server::keys::read_namespace;

/// How the server knows `MAILBOX.ACL`: a container, each subcommand with flags and a key
/// position of its own (the key is the name whose namespace holds the grants, or the mailbox).
pub const META: Meta = Meta {
    name: "mailbox.acl",
    handler: command,
    flags: "",
    key: 0,
    arity: -2,
    summary: "Grants, revokes, lists and checks the module's permissions; sets send quotas",
    key_spec: None,
    subcommands: SUBCOMMANDS,
};

const SUBCOMMANDS: &[Meta] = &[
    Meta {
        name: "grant",
        handler: command,
        flags: "write deny-oom",
        key: 4,
        arity: -5,
        summary: "Grants a permission on a name pattern",
        key_spec: Some(KeySpecFlags::READ_ONLY),
        subcommands: &[],
    },
    Meta {
        name: "revoke",
        handler: command,
        flags: "write",
        key: 4,
        arity: -5,
        summary: "Revokes a permission on a name pattern",
        key_spec: Some(KeySpecFlags::READ_ONLY),
        subcommands: &[],
    },
    Meta {
        name: "quota",
        handler: command,
        flags: "write deny-oom",
        key: 4,
        arity: -5,
        summary: "Sets or resets an agent's send quota in a namespace",
        key_spec: Some(KeySpecFlags::READ_ONLY),
        subcommands: &[],
    },
    Meta {
        name: "check",
        handler: command,
        flags: "readonly fast",
        key: 4,
        arity: 5,
        summary: "Whether an agent holds a permission on a name",
        key_spec: Some(KeySpecFlags::READ_ONLY),
        subcommands: &[],
    },
    Meta {
        name: "list",
        handler: command,
        flags: "readonly",
        key: 2,
        arity: -3,
        summary: "Lists the grants of a namespace",
        key_spec: Some(KeySpecFlags::READ_ONLY),
        subcommands: &[],
    },
];

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    let all = super::arg_slices(&argv);
    let Some((sub, rest)) = all.split_first() else { return Err(RedisError::WrongArity) };
    let upper = sub.to_ascii_uppercase();
    // GRANT, REVOKE and LIST end with an optional `AS agent`; the lengths of their
    // forms tell it apart from their own arguments.
    let (end, as_agent) = match upper.as_slice() {
        b"GRANT" | b"REVOKE" | b"LIST" if rest.len() >= 3 => args::split_as(rest).map_err(err)?,
        _ => (rest.len(), None),
    };
    let given = &rest[..end];
    let as_agent = as_agent.as_deref();
    match (upper.as_slice(), given) {
        (b"GRANT", [agent, permission, pattern]) => change(ctx, agent, permission, pattern, true, as_agent),
        (b"REVOKE", [agent, permission, pattern]) => change(ctx, agent, permission, pattern, false, as_agent),
        (b"CHECK", [agent, permission, name]) => {
            args::check_agent(agent).map_err(err)?;
            access::check_name(ctx, name)?;
            let permission = parse_permission(permission)?;
            let caller = ctx.get_current_user();
            own_or_admin(ctx, caller.as_slice(), agent, name, "mailbox.acl check")?;
            Ok(RedisValue::Integer(i64::from(access::allowed(ctx, agent, permission, name))))
        }
        (b"LIST", [space]) => list(ctx, space, None, as_agent),
        (b"LIST", [space, agent]) => list(ctx, space, Some(agent), as_agent),
        (b"QUOTA", [agent, rate, space, opts @ ..]) => quota(ctx, agent, rate, space, opts),
        _ => Err(RedisError::WrongArity),
    }
}

/// `caller` may look at its own grants; anyone else's need `admin` on `name`.
fn own_or_admin(
    ctx: &Context,
    caller: &[u8],
    agent: &[u8],
    name: &[u8],
    command: &str,
) -> Result<(), RedisError> {
    if caller == agent {
        return Ok(());
    }
    access::authorize(ctx, caller, Permission::Admin, name, command)
}

fn parse_permission(permission: &[u8]) -> Result<Permission, RedisError> {
    Permission::parse(permission).ok_or_else(|| err(errors::unknown_permission(permission)))
}

/// Grants or revokes; needs `admin` on the pattern itself (the caller's, or with
/// `AS` the agent's). Replies 1 when it changed something, 0 when the grant was
/// already there (or not there).
fn change(
    ctx: &Context,
    agent: &[u8],
    permission: &[u8],
    pattern: &[u8],
    grant: bool,
    as_agent: Option<&[u8]>,
) -> RedisResult {
    args::check_agent(agent).or_else(|e| if agent == b"*" { Ok(()) } else { Err(e) }).map_err(err)?;
    let permission = parse_permission(permission)?;
    if pattern.is_empty() {
        return Err(RedisError::Str(errors::EMPTY_PATTERN));
    }
    access::check_name(ctx, pattern)?;
    require_master(ctx)?;
    let command = if grant { "mailbox.acl grant" } else { "mailbox.acl revoke" };
    let caller = access::caller(ctx, pattern, as_agent, command)?;
    access::authorize(ctx, &caller.agent, Permission::Admin, pattern, command)?;
    let g = Grant { agent: agent.to_vec(), permission, pattern: pattern.to_vec() };
    let changed = with_namespace(ctx, pattern, |ns, ns_key| {
        let present = ns.grants().any(|x| *x == g);
        if present == grant {
            return false;
        }
        let effect = if grant { NsEffect::Grant(g.clone()) } else { NsEffect::Revoke(g.clone()) };
        ns_apply(ctx, ns, ns_key, effect);
        true
    })?;
    if changed {
        let event: &[u8] = if grant { b"grant" } else { b"revoke" };
        let mut fields: Vec<(&str, &[u8])> = vec![("event", event)];
        fields.extend(caller.audit_fields("by"));
        fields.extend([
            ("agent", agent),
            ("permission", permission.as_str().as_bytes()),
            ("pattern", pattern),
        ]);
        access::audit(ctx, pattern, &fields);
    }
    touch(ctx, pattern, &caller.agent, now_ms());
    Ok(RedisValue::Integer(i64::from(changed)))
}

/// The grants of one namespace (`space` names it, as in `BROADCAST`), as
/// `[agent, permission, pattern]`; with `agent`, only that agent's. Reads the one
/// namespace key: nothing walks the keyspace.
fn list(ctx: &Context, space: &[u8], agent: Option<&[u8]>, as_agent: Option<&[u8]>) -> RedisResult {
    access::check_name(ctx, space)?;
    if let Some(agent) = agent {
        args::check_agent(agent).map_err(err)?;
    }
    let caller = access::caller(ctx, space, as_agent, "mailbox.acl list")?;
    match agent {
        Some(agent) => own_or_admin(ctx, &caller.agent, agent, space, "mailbox.acl list")?,
        None => access::authorize(ctx, &caller.agent, Permission::Admin, space, "mailbox.acl list")?,
    }
    let mut rows: Vec<(Vec<u8>, Permission, Vec<u8>)> = read_namespace(ctx, space, |ns| {
        ns.map(|ns| {
            ns.grants()
                .filter(|g| agent.is_none_or(|a| a == g.agent.as_slice()))
                .map(|g| (g.agent.clone(), g.permission, g.pattern.clone()))
                .collect()
        })
        .unwrap_or_default()
    })?;
    rows.sort();
    Ok(RedisValue::Array(
        rows.into_iter()
            .map(|(a, p, pat)| {
                RedisValue::Array(vec![
                    RedisValue::StringBuffer(a),
                    RedisValue::SimpleStringStatic(p.as_str()),
                    RedisValue::StringBuffer(pat),
                ])
            })
            .collect(),
    ))
}

/// `QUOTA agent rate namespace [BURST n]` sets an agent's send quota in a
/// namespace (messages a second; 0 = unlimited); `QUOTA agent RESET namespace`
/// returns it to the configs. Needs `admin` on the namespace name.
fn quota(ctx: &Context, agent: &[u8], rate: &[u8], space: &[u8], opts: &[&[u8]]) -> RedisResult {
    args::check_agent(agent).map_err(err)?;
    access::check_name(ctx, space)?;
    require_master(ctx)?;
    let default_burst = config::get(&config::SEND_BURST).max(config::SEND_BURST_LIMITS.min) as u64;
    let value = args::parse_quota(rate, opts, default_burst).map_err(err)?;
    let caller = ctx.get_current_user().as_slice().to_vec();
    access::authorize(ctx, &caller, Permission::Admin, space, "mailbox.acl quota")?;
    if value.is_some() {
        crate::quota::overrides_exist();
    }
    with_namespace(ctx, space, |ns, ns_key| {
        if ns.quota(agent) != value {
            ns_apply(ctx, ns, ns_key, NsEffect::Quota { agent: agent.to_vec(), quota: value });
        }
    })?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}
