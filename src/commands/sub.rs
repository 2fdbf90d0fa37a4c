//! `MAILBOX.SUB mailbox pattern [pattern ...] [FROM glob] [MINPRIORITY n] [TYPE glob] [AS agent]`,
//! `MAILBOX.UNSUB mailbox pattern [pattern ...] [AS agent]` and `MAILBOX.SUBS mailbox [AS agent]`:
//! a mailbox's topic subscriptions, kept in its namespace.

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access;
use crate::args;
use crate::core::grants::Permission;
use crate::core::names;
use crate::core::namespace::{Filter, Namespace};
use crate::core::topics::TopicPattern;
use crate::delivery::{ns_apply, open_or_create, touch, with_namespace};
use crate::effects::NsEffect;
use crate::errors;
use crate::errors::err;
use crate::server::context::now_ms;
use crate::server::keys::read_namespace;

/// How the server knows `MAILBOX.SUB`.
pub const SUB: Meta = Meta {
    name: "mailbox.sub",
    handler: sub,
    flags: "write deny-oom",
    key: 1,
    arity: -3,
    summary: "Subscribes a mailbox to topic patterns",
    key_spec: Some(KeySpecFlags::READ_WRITE.union(KeySpecFlags::INSERT)),
    subcommands: &[],
};

/// How the server knows `MAILBOX.UNSUB`.
pub const UNSUB: Meta = Meta {
    name: "mailbox.unsub",
    handler: unsub,
    flags: "write",
    key: 1,
    arity: -3,
    summary: "Unsubscribes a mailbox from topic patterns",
    key_spec: Some(KeySpecFlags::READ_ONLY),
    subcommands: &[],
};

/// How the server knows `MAILBOX.SUBS`.
pub const SUBS: Meta = Meta {
    name: "mailbox.subs",
    handler: subs,
    flags: "readonly",
    key: 1,
    arity: -2,
    summary: "Lists a mailbox's topic subscriptions",
    key_spec: Some(KeySpecFlags::READ_ONLY),
    subcommands: &[],
};

/// A pattern as given (optionally with the mailbox's `{tag}`), as stored: without the tag.
pub fn local_pattern(mailbox: &[u8], pattern: &[u8]) -> Result<TopicPattern, RedisError> {
    if let Some(tag) = names::hash_tag(pattern) {
        if names::hash_tag(mailbox) != Some(tag) {
            return Err(err(errors::other_namespace(pattern)));
        }
    }
    TopicPattern::parse(&names::local_part(pattern)).map_err(|e| RedisError::Str(errors::topic(&e)))
}

/// What SUB and UNSUB take: the mailbox, its patterns, SUB's filter and the `AS` agent.
struct Request {
    mailbox: Vec<u8>,
    patterns: Vec<TopicPattern>,
    filter: Filter,
    as_agent: Option<Vec<u8>>,
}

/// `mailbox pattern [pattern ...]`, then the trailing options: with `filters` SUB's
/// (`args::parse_sub`), else only `AS agent`.
fn parse(ctx: &Context, argv: &[RedisString], filters: bool) -> Result<Request, RedisError> {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(argv);
    access::check_name(ctx, all[0])?;
    let (filter, as_agent, end) = if filters {
        let opts = args::parse_sub(&all).map_err(err)?;
        (opts.filter, opts.as_agent, opts.end)
    } else {
        let (end, as_agent) = args::split_as(&all).map_err(err)?;
        if end < 2 {
            return Err(err(errors::SYNTAX));
        }
        (Filter::default(), as_agent, end)
    };
    let patterns = all[1..end].iter().map(|p| local_pattern(all[0], p)).collect::<Result<Vec<_>, _>>()?;
    Ok(Request { mailbox: all[0].to_vec(), patterns, filter, as_agent })
}

/// `read` on the mailbox (its subscriptions are its owner's business) and
/// `subscribe` on each pattern, as a name of the mailbox's namespace. The agent
/// they are checked for is the caller's, or with `AS` the agent's.
fn authorize(ctx: &Context, req: &Request, command: &str) -> Result<Vec<u8>, RedisError> {
    let caller = access::caller(ctx, &req.mailbox, req.as_agent.as_deref(), command)?;
    access::authorize(ctx, &caller.agent, Permission::Read, &req.mailbox, command)?;
    for p in &req.patterns {
        let full = names::agent_mailbox(&req.mailbox, p.as_bytes());
        access::authorize(ctx, &caller.agent, Permission::Subscribe, &full, command)?;
    }
    Ok(caller.agent)
}

pub fn sub(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    let req = parse(ctx, &argv, true)?;
    let agent = authorize(ctx, &req, "mailbox.sub")?;
    let Request { mailbox, patterns, filter, .. } = req;
    let key = ctx.open_key_writable(&argv[1]);
    // A subscription needs a mailbox to deliver to: create it if missing.
    open_or_create(ctx, &key, &mailbox)?;
    let added = with_namespace(ctx, &mailbox, |ns, ns_key| {
        let mut changed: Vec<TopicPattern> =
            patterns.into_iter().filter(|p| ns.filter_of(&mailbox, p) != Some(&filter)).collect();
        changed.sort();
        changed.dedup();
        let n = changed.len();
        if n > 0 {
            let effect = if filter.is_empty() {
                NsEffect::Subscribe { mailbox: mailbox.clone(), patterns: changed }
            } else {
                NsEffect::SubscribeFiltered {
                    mailbox: mailbox.clone(),
                    filter: filter.clone(),
                    patterns: changed,
                }
            };
            ns_apply(ctx, ns, ns_key, effect);
        }
        n
    })?;
    touch(ctx, &mailbox, &agent, now_ms());
    Ok(RedisValue::Integer(added as i64))
}

pub fn unsub(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    let req = parse(ctx, &argv, false)?;
    let caller = access::caller(ctx, &req.mailbox, req.as_agent.as_deref(), "mailbox.unsub")?;
    access::authorize(ctx, &caller.agent, Permission::Read, &req.mailbox, "mailbox.unsub")?;
    let Request { mailbox, patterns, .. } = req;
    let agent = caller.agent;
    let removed = with_namespace(ctx, &mailbox, |ns, ns_key| {
        let mut gone: Vec<TopicPattern> =
            patterns.into_iter().filter(|p| ns.subscriptions_of(&mailbox).contains(&p)).collect();
        gone.sort();
        gone.dedup();
        let n = gone.len();
        if n > 0 {
            ns_apply(ctx, ns, ns_key, NsEffect::Unsubscribe { mailbox: mailbox.clone(), patterns: gone });
        }
        n
    })?;
    touch(ctx, &mailbox, &agent, now_ms());
    Ok(RedisValue::Integer(removed as i64))
}

pub fn subs(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 2 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    let mailbox = all[0];
    access::check_name(ctx, mailbox)?;
    let as_agent = args::only_as(&all[1..]).map_err(err)?;
    let caller = access::caller(ctx, mailbox, as_agent.as_deref(), "mailbox.subs")?;
    access::authorize(ctx, &caller.agent, Permission::Read, mailbox, "mailbox.subs")?;
    let rows =
        read_namespace(ctx, mailbox, |ns| ns.map(|ns| subscriptions(ns, mailbox)).unwrap_or_default())?;
    Ok(RedisValue::Array(rows))
}

/// `[pattern, filter fields...]` for each subscription of `mailbox`.
fn subscriptions(ns: &Namespace, mailbox: &[u8]) -> Vec<RedisValue> {
    ns.subscriptions_of(mailbox)
        .into_iter()
        .map(|p| {
            let mut row = vec![RedisValue::StringBuffer(p.as_bytes().to_vec())];
            if let Some(f) = ns.filter_of(mailbox, p) {
                if let Some(from) = &f.from {
                    row.push(RedisValue::SimpleStringStatic("from"));
                    row.push(RedisValue::StringBuffer(from.clone()));
                }
                if let Some(min) = f.min_priority {
                    row.push(RedisValue::SimpleStringStatic("minpriority"));
                    row.push(RedisValue::Integer(i64::from(min)));
                }
                if let Some(t) = &f.content_type {
                    row.push(RedisValue::SimpleStringStatic("type"));
                    row.push(RedisValue::StringBuffer(t.clone()));
                }
            }
            RedisValue::Array(row)
        })
        .collect()
}
