//! Who is calling, and may they: the agent a command acts as (the connection's ACL
//! user, or with `AS` the agent a trusted gateway acts for), the module's grants
//! checked on every command, and the audit stream that records refusals and other
//! security events. Redis's own ACL applies before any of this.

use redis_module::{CallOptionsBuilder, CallResult, Context, ContextFlags, RedisError};

use crate::config;
use crate::core::grants::Permission;
use crate::core::namespace::{self, Namespace};
use crate::namespace_type::NAMESPACE_TYPE;
use crate::stats;

/// The identity a command acts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The agent: stamped as `from`, checked for permissions.
    pub agent: Vec<u8>,
    /// The connection's own user when it acts `AS` another agent.
    pub via: Option<Vec<u8>>,
}

/// The caller of this command on names of `name`'s namespace: with `as_agent`,
/// only if the connection's user holds `impersonate` on that agent's mailbox name
/// (`{ns}agent`); every `AS` is audited.
pub fn caller(
    ctx: &Context,
    name: &[u8],
    as_agent: Option<&[u8]>,
    command: &str,
) -> Result<Caller, RedisError> {
    let user = ctx.get_current_user().as_slice().to_vec();
    let Some(agent) = as_agent else { return Ok(Caller { agent: user, via: None }) };
    let target = namespace::agent_mailbox(name, agent);
    authorize(ctx, &user, Permission::Impersonate, &target, command)?;
    audit(ctx, name, &[("event", b"as"), ("user", &user), ("agent", agent), ("command", command.as_bytes())]);
    Ok(Caller { agent: agent.to_vec(), via: Some(user) })
}

/// Whether `agent` may use `permission` on `name`, by the policy and the grants
/// of `name`'s namespace; superusers (`mailbox.superusers`) always may.
pub fn allowed(ctx: &Context, agent: &[u8], permission: Permission, name: &[u8]) -> bool {
    if config::is_superuser(agent) {
        return true;
    }
    let key = ctx.open_key(&crate::commands::rstring(ctx, namespace::namespace_key(name)));
    match key.get_value::<Namespace>(&NAMESPACE_TYPE) {
        Ok(Some(ns)) => ns.allows(config::policy(), agent, permission, name),
        _ => Namespace::new().allows(config::policy(), agent, permission, name),
    }
}

/// `Ok` when allowed; else counts and audits the refusal and returns `NOPERM`.
pub fn authorize(
    ctx: &Context,
    agent: &[u8],
    permission: Permission,
    name: &[u8],
    command: &str,
) -> Result<(), RedisError> {
    if allowed(ctx, agent, permission, name) {
        return Ok(());
    }
    stats::DENIED.incr();
    audit(
        ctx,
        name,
        &[
            ("event", b"denied"),
            ("agent", agent),
            ("permission", permission.as_str().as_bytes()),
            ("name", name),
            ("command", command.as_bytes()),
        ],
    );
    Err(RedisError::String(format!(
        "NOPERM agent '{}' has no '{}' permission on '{}'",
        String::from_utf8_lossy(agent),
        permission,
        String::from_utf8_lossy(name)
    )))
}

/// The audit stream of `name`'s namespace: `mailbox.audit-stream`, plus `:{tag}`
/// for a tagged namespace, so it lies in the namespace's slot.
pub fn audit_stream(name: &[u8]) -> Vec<u8> {
    let mut stream = config::audit_stream().into_bytes();
    if let Some(tag) = namespace::hash_tag(name) {
        stream.extend_from_slice(b":{");
        stream.extend_from_slice(tag);
        stream.push(b'}');
    }
    stream
}

/// Appends one event to the audit stream (`XADD ... MAXLEN ~ cap`), replicated.
/// Only on a master, for commands from clients: replicas and AOF replays get the
/// `XADD` the master replicated.
pub fn audit(ctx: &Context, name: &[u8], fields: &[(&str, &[u8])]) {
    let cap = config::get(&config::AUDIT_MAXLEN);
    let flags = ctx.get_flags();
    if cap <= 0
        || !flags.contains(ContextFlags::MASTER)
        || flags.intersects(ContextFlags::REPLICATED | ContextFlags::LOADING)
    {
        return;
    }
    let stream = audit_stream(name);
    let cap = cap.to_string();
    let mut args: Vec<&[u8]> = vec![&stream, b"MAXLEN", b"~", cap.as_bytes(), b"*"];
    for (field, value) in fields {
        args.push(field.as_bytes());
        args.push(value);
    }
    let options = CallOptionsBuilder::new().replicate().build();
    let result: CallResult = ctx.call_ext("XADD", &options, args.as_slice());
    if result.is_err() {
        ctx.log_warning("mailbox: could not append to the audit stream (does the key hold another type?)");
    }
}
