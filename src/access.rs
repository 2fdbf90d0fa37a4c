//! Who is calling, and may they: the agent a command acts as (the connection's ACL
//! user, or with `AS` the agent a trusted gateway acts for), the module's grants
//! checked on every command, and the audit stream that records refusals and other
//! security events, and which names a command may take at all. Redis's own ACL
//! applies before any of this.

#![forbid(unsafe_code)]

use redis_module::{CallOptionsBuilder, CallResult, Context, RedisError};

use crate::config;
use crate::core::grants::Permission;
use crate::core::names;
use crate::core::namespace::Namespace;
use crate::counters;
use crate::errors;
use crate::server::context::{in_cluster, is_master, replaying, rstring};
use crate::types::ffi::NAMESPACE_TYPE;

/// The identity a command acts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The agent: stamped as `from`, checked for permissions.
    pub agent: Vec<u8>,
    /// The connection's own user when it acts `AS` another agent.
    pub via: Option<Vec<u8>>,
}

impl Caller {
    /// An audit event's fields naming who acted: the agent under `field`, then
    /// `via` the connection's user when it acted `AS` the agent.
    pub fn audit_fields<'a>(&'a self, field: &'a str) -> Vec<(&'a str, &'a [u8])> {
        let mut fields = vec![(field, self.agent.as_slice())];
        if let Some(via) = &self.via {
            fields.push(("via", via.as_slice()));
        }
        fields
    }
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
    let caller = caller_unaudited(ctx, name, as_agent, command)?;
    if let (Some(user), Some(agent)) = (&caller.via, as_agent) {
        audit(
            ctx,
            name,
            &[("event", b"as"), ("user", user), ("agent", agent), ("command", command.as_bytes())],
        );
    }
    Ok(caller)
}

/// `caller` without the audit record of an `AS`: for a blocked read that is
/// checked again each time it is served (its `AS` was recorded when it came in).
pub fn caller_unaudited(
    ctx: &Context,
    name: &[u8],
    as_agent: Option<&[u8]>,
    command: &str,
) -> Result<Caller, RedisError> {
    let user = ctx.get_current_user().as_slice().to_vec();
    let Some(agent) = as_agent else { return Ok(Caller { agent: user, via: None }) };
    may_act_as(ctx, &user, agent, name, command)?;
    Ok(Caller { agent: agent.to_vec(), via: Some(user) })
}

/// Whether `user` may act as `agent` on names of `name`'s namespace: it needs
/// `impersonate` on the agent's mailbox name there (`{ns}agent`), and acting as
/// someone mightier is refused unless `user` is a superuser itself: as a
/// superuser, or as an agent holding `admin` or `impersonate` on that namespace
/// when `user` does not. So an `impersonate` grant never leads past its holder's
/// own reach. Refusals are counted and audited like any other.
fn may_act_as(
    ctx: &Context,
    user: &[u8],
    agent: &[u8],
    name: &[u8],
    command: &str,
) -> Result<(), RedisError> {
    let target = names::agent_mailbox(name, agent);
    authorize(ctx, user, Permission::Impersonate, &target, command)?;
    if config::is_superuser(user) {
        return Ok(());
    }
    // Neither is a superuser past this point: the grants alone decide, read in one visit.
    let mightier = config::is_superuser(agent)
        || with_grants(ctx, name, |ns| {
            let policy = config::policy();
            [Permission::Admin, Permission::Impersonate]
                .into_iter()
                .any(|p| ns.allows(policy, agent, p, name) && !ns.allows(policy, user, p, name))
        });
    if mightier {
        let text = errors::mightier_agent(user, agent);
        return Err(refuse(ctx, user, Permission::Impersonate, &target, command, text));
    }
    Ok(())
}

/// What a sending command's options reach besides its target: the `REPLYTO`
/// mailbox (receipts and replies land there) needs `send` as the target does; with
/// `CONFIRM` and no `REPLYTO`, the sender's own mailbox, where receipts go, must be
/// a name commands take (an ACL user's name need not be UTF-8).
pub fn authorize_options(
    ctx: &Context,
    name: &[u8],
    caller: &Caller,
    opts: &crate::args::SendOptions,
    command: &str,
) -> Result<(), RedisError> {
    if let Some(reply_to) = &opts.reply_to {
        check_name(ctx, reply_to)?;
        authorize(ctx, &caller.agent, Permission::Send, reply_to, command)?;
    } else if opts.confirm {
        let home = names::agent_mailbox(name, &caller.agent);
        if crate::args::check_name(&home).is_err() || check_not_reserved(&home).is_err() {
            return Err(RedisError::String(errors::no_receipt_mailbox(&home)));
        }
    }
    Ok(())
}

/// Whether `agent` may use `permission` on `name`, by the policy and the grants
/// of `name`'s namespace; superusers (`mailbox.superusers`) always may.
pub fn allowed(ctx: &Context, agent: &[u8], permission: Permission, name: &[u8]) -> bool {
    if config::is_superuser(agent) {
        return true;
    }
    with_grants(ctx, name, |ns| ns.allows(config::policy(), agent, permission, name))
}

/// Runs `f` on the namespace of `name`, whose grants answer for it (an empty one when
/// its key is missing or holds another type): one key lookup for several questions.
fn with_grants<R>(ctx: &Context, name: &[u8], f: impl FnOnce(&Namespace) -> R) -> R {
    let key = ctx.open_key(&rstring(ctx, names::namespace_key(name)));
    match key.get_value::<Namespace>(&NAMESPACE_TYPE) {
        Ok(Some(ns)) => f(ns),
        _ => f(&Namespace::new()),
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
    let text = errors::noperm(agent, permission.as_str(), name);
    Err(refuse(ctx, agent, permission, name, command, text))
}

/// Counts and audits a refusal; the `NOPERM` error to reply.
fn refuse(
    ctx: &Context,
    agent: &[u8],
    permission: Permission,
    name: &[u8],
    command: &str,
    text: String,
) -> RedisError {
    counters::DENIED.incr();
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
    RedisError::String(text)
}

/// The audit stream of `name`'s namespace: `mailbox.audit-stream`, plus `:{tag}`
/// for a tagged namespace, so it lies in the namespace's slot.
pub fn audit_stream(name: &[u8]) -> Vec<u8> {
    config::with_audit_stream(|stream| audit_stream_in(stream, name))
}

/// The audit stream of `name`'s namespace when the configured name is `stream`.
pub fn audit_stream_in(stream: &str, name: &[u8]) -> Vec<u8> {
    let mut out = stream.as_bytes().to_vec();
    if let Some(tag) = names::hash_tag(name) {
        out.extend_from_slice(b":{");
        out.extend_from_slice(tag);
        out.push(b'}');
    }
    out
}

/// Where an event about `name` is recorded. A namespace's own stream only once the
/// namespace exists (its key does), so refusals on made-up names create no keys:
/// those go to the default namespace's stream, one capped key; in a cluster, where
/// that stream may lie on another node, they are only counted (`denied`).
fn audit_target(ctx: &Context, name: &[u8]) -> Option<Vec<u8>> {
    if names::hash_tag(name).is_none() {
        return Some(config::audit_stream().into_bytes());
    }
    let ns_key = rstring(ctx, names::namespace_key(name));
    if !ctx.open_key(&ns_key).is_null() {
        Some(audit_stream(name))
    } else if in_cluster(ctx) {
        None
    } else {
        Some(config::audit_stream().into_bytes())
    }
}

/// Appends one event to the audit stream (`XADD ... MAXLEN ~ cap`), replicated.
/// Only on a master, for commands from clients: replicas and AOF replays get the
/// `XADD` the master replicated.
pub fn audit(ctx: &Context, name: &[u8], fields: &[(&str, &[u8])]) {
    let cap = config::get(&config::AUDIT_MAXLEN);
    if cap <= 0 || !is_master(ctx) || replaying(ctx) {
        return;
    }
    let Some(stream) = audit_target(ctx, name) else { return };
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

/// A name a command takes (mailbox, topic, namespace): non-empty UTF-8, and in a
/// cluster it must carry a hash tag, so everything the command touches lies in
/// one slot (the default namespace cannot live in one slot).
pub fn check_name(ctx: &Context, name: &[u8]) -> Result<(), RedisError> {
    crate::args::check_name(name).map_err(errors::err)?;
    check_not_reserved(name)?;
    check_cluster_tag(ctx, name)
}

/// The module's own keys are no mailbox or topic: the namespace keys
/// (`mailbox:ns`, `mailbox:ns:{tag}`) and the audit streams (`mailbox.audit-stream`,
/// with `:{tag}`). A command that took one as a mailbox would turn it into one.
pub fn check_not_reserved(name: &[u8]) -> Result<(), RedisError> {
    let is_ns_key = name.starts_with(names::NAMESPACE_KEY_PREFIX) && names::namespace_key(name) == name;
    let is_audit = !is_ns_key
        && config::with_audit_stream(|stream| {
            name.starts_with(stream.as_bytes()) && audit_stream_in(stream, name) == name
        });
    if is_ns_key || is_audit {
        return Err(errors::err(errors::reserved_name(name)));
    }
    Ok(())
}

/// In a cluster, `name` must carry a hash tag.
pub fn check_cluster_tag(ctx: &Context, name: &[u8]) -> Result<(), RedisError> {
    if in_cluster(ctx) && names::hash_tag(name).is_none() {
        return Err(errors::err(errors::needs_hash_tag(name)));
    }
    Ok(())
}
