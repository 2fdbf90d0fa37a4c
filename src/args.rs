//! Argument parsing for every command, over plain byte slices: no Redis types, so
//! it is unit-tested and fuzzed on its own. Options are case-insensitive; an
//! unknown, repeated or valueless option is an error; integers are strict decimal.

#![forbid(unsafe_code)]

use crate::config::{self, MAX_DURATION_MS};
use crate::core::meta::{self, MetaError};
use crate::core::namespace::Filter;
use crate::core::{MessageId, Overflow};
use crate::errors;

pub type ArgResult<T> = Result<T, String>;

/// Largest `COUNT` a read or listing accepts.
pub const MAX_COUNT: i64 = 100_000;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SendOptions {
    pub priority: Option<u8>,
    pub ttl_ms: Option<u64>,
    pub dedup: Option<Vec<u8>>,
    pub content_type: Option<Vec<u8>>,
    pub thread: Option<Vec<u8>>,
    pub correlation: Option<Vec<u8>>,
    pub reply_to: Option<Vec<u8>>,
    pub meta: Option<Vec<u8>>,
    /// `AS agent`: act for another agent (needs the `impersonate` grant).
    pub as_agent: Option<Vec<u8>>,
    /// `EPHEMERAL`: pushed to listeners only, never stored.
    pub ephemeral: bool,
    /// `CONFIRM`: a receipt comes back when the message is acked, dead-lettered or expires.
    pub confirm: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    pub count: usize,
    pub block_ms: Option<u64>,
    pub lease_ms: Option<u64>,
    pub noack: bool,
    pub as_agent: Option<Vec<u8>>,
    /// With `BLOCK`: wait until at least this many messages are ready.
    pub min: Option<usize>,
}

/// Ids and the trailing options of `MAILBOX.ACK` (`AS`) and `MAILBOX.NACK` (`DELAY`, `AS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleOptions {
    pub ids: Vec<MessageId>,
    pub delay_ms: u64,
    pub as_agent: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeOptions {
    pub start: MessageId,
    pub end: MessageId,
    /// 0 = no limit.
    pub count: usize,
    pub as_agent: Option<Vec<u8>>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    pub maxlen: Option<u64>,
    pub ttl_ms: Option<u64>,
    pub lease_ms: Option<u64>,
    pub max_deliveries: Option<u32>,
    pub dedup_window_ms: Option<u64>,
    pub overflow: Option<Overflow>,
    pub update: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Ids(Vec<MessageId>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadAction {
    List(RangeOptions),
    Requeue(Selection),
    Purge(Selection),
}

/// `MAILBOX.DEAD`'s action and its `AS agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadOptions {
    pub action: DeadAction,
    pub as_agent: Option<Vec<u8>>,
}

/// `MAILBOX.THREAD`'s options after the thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadOptions {
    /// 0 = all.
    pub count: usize,
    pub as_agent: Option<Vec<u8>>,
}

/// `MAILBOX.SUB`'s trailing options, and where its patterns end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubOptions {
    pub filter: Filter,
    pub as_agent: Option<Vec<u8>>,
    /// `args[1..end]` are the patterns.
    pub end: usize,
}

/// A mailbox name: non-empty UTF-8.
pub fn check_name(name: &[u8]) -> ArgResult<()> {
    if name.is_empty() || std::str::from_utf8(name).is_err() {
        return Err(errors::BAD_NAME.to_string());
    }
    Ok(())
}

/// Strict decimal integer in `min..=max`; `what` names it in the error.
pub fn parse_int(what: &str, arg: &[u8], min: i64, max: i64) -> ArgResult<i64> {
    let err = || errors::bad_integer(what, &format!("an integer from {min} to {max}"));
    let text = std::str::from_utf8(arg).map_err(|_| err())?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let value: i64 = text.parse().map_err(|_| err())?;
    if value < min || value > max {
        return Err(err());
    }
    Ok(value)
}

fn parse_u64(what: &str, arg: &[u8], min: i64, max: i64) -> ArgResult<u64> {
    parse_int(what, arg, min, max).map(|v| v.unsigned_abs())
}

pub fn parse_id(arg: &[u8]) -> ArgResult<MessageId> {
    MessageId::parse(arg).ok_or_else(|| errors::bad_id(arg))
}

pub fn parse_ids(args: &[&[u8]]) -> ArgResult<Vec<MessageId>> {
    args.iter().map(|a| parse_id(a)).collect()
}

fn parse_bound(arg: &[u8], is_start: bool) -> ArgResult<MessageId> {
    MessageId::parse_bound(arg, is_start).ok_or_else(|| errors::bad_id(arg))
}

/// Walks `NAME value` / `FLAG` options, refusing unknown and repeated ones.
struct Options<'a> {
    args: &'a [&'a [u8]],
    pos: usize,
    seen: Vec<&'static str>,
}

impl<'a> Options<'a> {
    fn new(args: &'a [&'a [u8]]) -> Self {
        Options { args, pos: 0, seen: Vec::new() }
    }

    /// The next option name, upper-cased, matched against `known`.
    fn next(&mut self, known: &[&'static str]) -> ArgResult<Option<&'static str>> {
        let Some(arg) = self.args.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        let name = known
            .iter()
            .find(|k| k.as_bytes().eq_ignore_ascii_case(arg))
            .ok_or_else(|| errors::unknown_option(arg))?;
        if self.seen.contains(name) {
            return Err(errors::repeated_option(name));
        }
        self.seen.push(name);
        Ok(Some(name))
    }

    fn value(&mut self, name: &str) -> ArgResult<&'a [u8]> {
        let value = self.args.get(self.pos).ok_or_else(|| errors::missing_value(name))?;
        self.pos += 1;
        Ok(value)
    }
}

/// `MAILBOX.SEND` options after the mailbox and the payload.
pub fn parse_send(args: &[&[u8]]) -> ArgResult<SendOptions> {
    const KNOWN: &[&str] = &[
        "PRIORITY",
        "TTL",
        "DEDUP",
        "TYPE",
        "THREAD",
        "CORRELATION",
        "REPLYTO",
        "META",
        "AS",
        "EPHEMERAL",
        "CONFIRM",
    ];
    let mut opts = SendOptions::default();
    let mut it = Options::new(args);
    while let Some(name) = it.next(KNOWN)? {
        match name {
            "EPHEMERAL" => {
                opts.ephemeral = true;
                continue;
            }
            "CONFIRM" => {
                opts.confirm = true;
                continue;
            }
            _ => {}
        }
        let value = it.value(name)?;
        match name {
            "PRIORITY" => {
                let p = parse_int(name, value, 0, 9).map_err(|_| errors::BAD_PRIORITY.to_string())?;
                opts.priority = Some(p as u8);
            }
            "TTL" => opts.ttl_ms = Some(parse_u64(name, value, 1, MAX_DURATION_MS)?),
            "DEDUP" => opts.dedup = Some(non_empty(name, value)?),
            "TYPE" => opts.content_type = Some(non_empty(name, value)?),
            "THREAD" => opts.thread = Some(non_empty(name, value)?),
            "CORRELATION" => opts.correlation = Some(non_empty(name, value)?),
            "REPLYTO" => {
                check_name(value)?;
                bounded(name, value)?;
                opts.reply_to = Some(value.to_vec());
            }
            "AS" => opts.as_agent = Some(as_agent(value)?),
            "META" => {
                meta::validate(value).map_err(|e| match e {
                    MetaError::TooDeep => errors::META_TOO_DEEP.to_string(),
                    MetaError::NotJson | MetaError::NotObject => errors::META_NOT_OBJECT.to_string(),
                })?;
                opts.meta = Some(value.to_vec());
            }
            _ => unreachable_option(name)?,
        }
    }
    if opts.ephemeral && (opts.confirm || opts.dedup.is_some()) {
        return Err(errors::EPHEMERAL_CONFLICT.to_string());
    }
    Ok(opts)
}

impl SendOptions {
    /// `DEDUP` keys are the sender's own: stored as `agent NUL key`, so one agent's
    /// key never matches (and so never swallows) another agent's message. Agent
    /// names hold no NUL (Redis refuses such user names), so the scopes never overlap.
    pub fn dedup_scoped_to(mut self, agent: &[u8]) -> Self {
        if let Some(key) = self.dedup.take() {
            let mut scoped = Vec::with_capacity(agent.len() + 1 + key.len());
            scoped.extend_from_slice(agent);
            scoped.push(0);
            scoped.extend_from_slice(&key);
            self.dedup = Some(scoped);
        }
        self
    }
}

fn non_empty(name: &str, value: &[u8]) -> ArgResult<Vec<u8>> {
    if value.is_empty() {
        return Err(errors::must_not_be_empty(name));
    }
    bounded(name, value)?;
    Ok(value.to_vec())
}

/// Longest value of a message's header fields (`TYPE`, `THREAD`, `CORRELATION`,
/// `DEDUP`, `REPLYTO`, `AS`): the payload and `META` have `mailbox.max-payload-bytes`.
pub const MAX_FIELD_BYTES: usize = 1024;

fn bounded(name: &str, value: &[u8]) -> ArgResult<()> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(errors::field_too_long(name, value.len(), MAX_FIELD_BYTES));
    }
    Ok(())
}

fn unreachable_option(name: &str) -> ArgResult<()> {
    // Only names listed in `KNOWN` reach the matches; keep the compiler and a
    // future mistake honest without a panic.
    Err(errors::unknown_option(name.as_bytes()))
}

/// `MAILBOX.READ` options after the mailbox.
pub fn parse_read(args: &[&[u8]]) -> ArgResult<ReadOptions> {
    let mut opts =
        ReadOptions { count: 1, block_ms: None, lease_ms: None, noack: false, as_agent: None, min: None };
    let mut it = Options::new(args);
    while let Some(name) = it.next(&["COUNT", "BLOCK", "LEASE", "NOACK", "AS", "MIN"])? {
        match name {
            "COUNT" => opts.count = parse_u64(name, it.value(name)?, 1, MAX_COUNT)? as usize,
            "BLOCK" => opts.block_ms = Some(parse_u64(name, it.value(name)?, 0, MAX_DURATION_MS)?),
            "LEASE" => opts.lease_ms = Some(parse_u64(name, it.value(name)?, 1, MAX_DURATION_MS)?),
            "NOACK" => opts.noack = true,
            "MIN" => opts.min = Some(parse_u64(name, it.value(name)?, 1, MAX_COUNT)? as usize),
            "AS" => opts.as_agent = Some(as_agent(it.value(name)?)?),
            _ => unreachable_option(name)?,
        }
    }
    if opts.min.is_some() && opts.block_ms.is_none() {
        return Err(errors::MIN_NEEDS_BLOCK.to_string());
    }
    Ok(opts)
}

/// `[start end] [COUNT n] [AS agent]`, as `MAILBOX.PEEK` and `MAILBOX.DEAD LIST` take them.
pub fn parse_range(args: &[&[u8]]) -> ArgResult<RangeOptions> {
    const KNOWN: &[&str] = &["COUNT", "AS"];
    let mut range = RangeOptions { start: MessageId::MIN, end: MessageId::MAX, count: 0, as_agent: None };
    let mut rest = args;
    if let [start, end, tail @ ..] = args {
        if !KNOWN.iter().any(|k| k.as_bytes().eq_ignore_ascii_case(start)) {
            range.start = parse_bound(start, true)?;
            range.end = parse_bound(end, false)?;
            rest = tail;
        }
    }
    let mut it = Options::new(rest);
    while let Some(name) = it.next(KNOWN)? {
        match name {
            "COUNT" => range.count = parse_u64(name, it.value(name)?, 1, MAX_COUNT)? as usize,
            "AS" => range.as_agent = Some(as_agent(it.value(name)?)?),
            _ => unreachable_option(name)?,
        }
    }
    Ok(range)
}

/// A trailing `AS agent` after a list of arguments (`MAILBOX.UNSUB mailbox pattern
/// [pattern ...] [AS agent]`): how many arguments come before it, and the agent.
pub fn split_as(args: &[&[u8]]) -> ArgResult<(usize, Option<Vec<u8>>)> {
    match args {
        [rest @ .., option, agent] if option.eq_ignore_ascii_case(b"AS") => {
            Ok((rest.len(), Some(as_agent(agent)?)))
        }
        _ => Ok((args.len(), None)),
    }
}

/// The options of a command whose only option is `AS agent` (`MAILBOX.INFO mailbox
/// [AS agent]`): nothing, or the agent.
pub fn only_as(args: &[&[u8]]) -> ArgResult<Option<Vec<u8>>> {
    let mut agent = None;
    let mut it = Options::new(args);
    while let Some(name) = it.next(&["AS"])? {
        agent = Some(as_agent(it.value(name)?)?);
    }
    Ok(agent)
}

/// The agent of `AS agent`: an agent name, within the length of a header field.
fn as_agent(value: &[u8]) -> ArgResult<Vec<u8>> {
    check_agent(value)?;
    bounded("AS", value)?;
    Ok(value.to_vec())
}

/// `MAILBOX.ACK` / `MAILBOX.NACK` arguments after the mailbox: ids, then the
/// options `allowed` names (`DELAY ms`, `AS agent`) at the end, in any order.
pub fn parse_settle(args: &[&[u8]], allowed: &[&'static str]) -> ArgResult<SettleOptions> {
    let mut opts = SettleOptions { ids: Vec::new(), delay_ms: 0, as_agent: None };
    let mut end = args.len();
    let mut seen: Vec<&str> = Vec::new();
    while end >= 2 {
        let Some(name) = allowed.iter().find(|k| k.as_bytes().eq_ignore_ascii_case(args[end - 2])) else {
            break;
        };
        if seen.contains(name) {
            return Err(errors::repeated_option(name));
        }
        seen.push(name);
        let value = args[end - 1];
        match *name {
            "DELAY" => opts.delay_ms = parse_u64("DELAY", value, 0, MAX_DURATION_MS)?,
            _ => opts.as_agent = Some(as_agent(value)?),
        }
        end -= 2;
    }
    if let Some(name) = end
        .checked_sub(1)
        .and_then(|last| allowed.iter().find(|k| k.as_bytes().eq_ignore_ascii_case(args[last])))
    {
        return Err(errors::missing_value(name));
    }
    if end == 0 {
        return Err(errors::SYNTAX.to_string());
    }
    opts.ids = parse_ids(&args[..end])?;
    Ok(opts)
}

/// An agent name (an ACL user): non-empty UTF-8 without spaces.
pub fn check_agent(agent: &[u8]) -> ArgResult<()> {
    match std::str::from_utf8(agent) {
        Ok(s) if !s.is_empty() && !s.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(errors::BAD_AGENT.to_string()),
    }
}

/// `MAILBOX.CREATE` options after the mailbox.
pub fn parse_create(args: &[&[u8]]) -> ArgResult<CreateOptions> {
    const KNOWN: &[&str] = &["MAXLEN", "TTL", "LEASE", "MAXDELIVER", "DEDUPWINDOW", "OVERFLOW", "UPDATE"];
    let mut opts = CreateOptions::default();
    let mut it = Options::new(args);
    while let Some(name) = it.next(KNOWN)? {
        match name {
            "MAXLEN" => opts.maxlen = Some(parse_u64(name, it.value(name)?, 0, i64::MAX)?),
            "TTL" => opts.ttl_ms = Some(parse_u64(name, it.value(name)?, 0, MAX_DURATION_MS)?),
            "LEASE" => opts.lease_ms = Some(parse_u64(name, it.value(name)?, 1, MAX_DURATION_MS)?),
            "MAXDELIVER" => {
                let n = parse_u64(name, it.value(name)?, 0, i64::from(u32::MAX))?;
                opts.max_deliveries = Some(n as u32);
            }
            "DEDUPWINDOW" => {
                opts.dedup_window_ms = Some(parse_u64(name, it.value(name)?, 0, MAX_DURATION_MS)?)
            }
            "OVERFLOW" => {
                let value = it.value(name)?;
                opts.overflow = Some(if value.eq_ignore_ascii_case(b"refuse") {
                    Overflow::Refuse
                } else if value.eq_ignore_ascii_case(b"drop-oldest") {
                    Overflow::DropOldest
                } else {
                    return Err(errors::BAD_OVERFLOW.to_string());
                });
            }
            "UPDATE" => opts.update = true,
            _ => unreachable_option(name)?,
        }
    }
    Ok(opts)
}

fn parse_selection(args: &[&[u8]]) -> ArgResult<Selection> {
    match args {
        [] => Err(errors::SYNTAX.to_string()),
        [all] if all.eq_ignore_ascii_case(b"ALL") => Ok(Selection::All),
        ids => Ok(Selection::Ids(parse_ids(ids)?)),
    }
}

/// `MAILBOX.DEAD` arguments after the mailbox: the action, its arguments, then
/// `AS agent` (among LIST's options, or at the end of REQUEUE's and PURGE's ids).
pub fn parse_dead(args: &[&[u8]]) -> ArgResult<DeadOptions> {
    let Some((action, rest)) = args.split_first() else {
        return Err(errors::SYNTAX.to_string());
    };
    if action.eq_ignore_ascii_case(b"LIST") {
        let mut range = parse_range(rest)?;
        let as_agent = range.as_agent.take();
        return Ok(DeadOptions { action: DeadAction::List(range), as_agent });
    }
    let (end, as_agent) = split_as(rest)?;
    let rest = &rest[..end];
    let action = if action.eq_ignore_ascii_case(b"REQUEUE") {
        DeadAction::Requeue(parse_selection(rest)?)
    } else if action.eq_ignore_ascii_case(b"PURGE") {
        DeadAction::Purge(parse_selection(rest)?)
    } else {
        return Err(errors::unknown_dead_subcommand(action));
    };
    Ok(DeadOptions { action, as_agent })
}

/// `MAILBOX.THREAD`'s options after the thread: `COUNT n` (default 0: all), `AS agent`.
pub fn parse_thread(opts: &[&[u8]]) -> ArgResult<ThreadOptions> {
    let mut out = ThreadOptions { count: 0, as_agent: None };
    let mut it = Options::new(opts);
    while let Some(name) = it.next(&["COUNT", "AS"])? {
        match name {
            "COUNT" => out.count = parse_int(name, it.value(name)?, 1, MAX_COUNT)? as usize,
            "AS" => out.as_agent = Some(as_agent(it.value(name)?)?),
            _ => unreachable_option(name)?,
        }
    }
    Ok(out)
}

/// `MAILBOX.ACL QUOTA`'s rate and options: `RESET` (`None`: back to the configs), or a
/// rate with an optional `BURST n` (`default_burst` without one).
pub fn parse_quota(rate: &[u8], opts: &[&[u8]], default_burst: u64) -> ArgResult<Option<(u64, u64)>> {
    if rate.eq_ignore_ascii_case(b"RESET") {
        if !opts.is_empty() {
            return Err(errors::SYNTAX.to_string());
        }
        return Ok(None);
    }
    let rate = parse_int("rate", rate, 0, config::MAX_QUOTA)? as u64;
    let burst = match opts {
        [] => default_burst,
        [opt, n] if opt.eq_ignore_ascii_case(b"BURST") => {
            parse_int("BURST", n, config::SEND_BURST_LIMITS.min, config::MAX_QUOTA)? as u64
        }
        [opt, ..] => return Err(errors::unknown_option(opt)),
    };
    Ok(Some((rate, burst)))
}

/// `MAILBOX.SUB`'s trailing options `FROM glob`, `MINPRIORITY n`, `TYPE glob`, `AS agent`,
/// read from the end of `args` (`mailbox pattern [pattern ...] [options]`), so a pattern
/// can be any topic pattern that is not followed by a value. Returns the filter, the
/// agent and where the patterns end; at least one pattern must be left.
pub fn parse_sub(args: &[&[u8]]) -> ArgResult<SubOptions> {
    let mut filter = Filter::default();
    let mut as_agent_value = None;
    let mut end = args.len();
    let mut seen: Vec<&str> = Vec::new();
    while end >= 3 {
        let Some(name) = ["FROM", "MINPRIORITY", "TYPE", "AS"]
            .into_iter()
            .find(|k| k.as_bytes().eq_ignore_ascii_case(args[end - 2]))
        else {
            break;
        };
        if seen.contains(&name) {
            return Err(errors::repeated_option(name));
        }
        seen.push(name);
        let value = args[end - 1];
        match name {
            "FROM" => filter.from = Some(value.to_vec()),
            "TYPE" => filter.content_type = Some(value.to_vec()),
            "AS" => as_agent_value = Some(as_agent(value)?),
            _ => filter.min_priority = Some(parse_int("MINPRIORITY", value, 0, 9)? as u8),
        }
        end -= 2;
    }
    if end < 2 {
        return Err(errors::SYNTAX.to_string());
    }
    Ok(SubOptions { filter, as_agent: as_agent_value, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&'static str]) -> Vec<&'static [u8]> {
        args.iter().map(|a| a.as_bytes()).collect()
    }

    #[test]
    fn send_options() {
        let o =
            parse_send(&v(&["priority", "9", "TTL", "1000", "META", "{\"a\":1}", "THREAD", "t"])).unwrap();
        assert_eq!(o.priority, Some(9));
        assert_eq!(o.ttl_ms, Some(1000));
        assert_eq!(o.thread.as_deref(), Some(&b"t"[..]));
        assert_eq!(parse_send(&v(&["PRIORITY", "10"])).unwrap_err(), errors::BAD_PRIORITY);
        assert_eq!(parse_send(&v(&["PRIORITY", "-1"])).unwrap_err(), errors::BAD_PRIORITY);
        assert_eq!(parse_send(&v(&["BOGUS", "1"])).unwrap_err(), "ERR unknown option 'BOGUS'");
        assert_eq!(
            parse_send(&v(&["TTL", "5", "ttl", "6"])).unwrap_err(),
            "ERR option 'TTL' given more than once"
        );
        assert_eq!(parse_send(&v(&["TTL"])).unwrap_err(), "ERR option 'TTL' needs a value");
        assert!(parse_send(&v(&["TTL", "0"])).is_err());
        assert!(parse_send(&v(&["TTL", "1e3"])).is_err());
        assert!(parse_send(&v(&["TTL", "99999999999999999999999"])).is_err());
        assert_eq!(parse_send(&v(&["META", "[1]"])).unwrap_err(), errors::META_NOT_OBJECT);
        assert_eq!(parse_send(&v(&["META", "{"])).unwrap_err(), errors::META_NOT_OBJECT);
        assert_eq!(parse_send(&v(&["REPLYTO", ""])).unwrap_err(), errors::BAD_NAME);
        assert!(parse_send(&[b"REPLYTO", b"\xff"]).is_err());
        let o = parse_send(&v(&["EPHEMERAL", "PRIORITY", "1"])).unwrap();
        assert!(o.ephemeral && !o.confirm && o.priority == Some(1));
        assert!(parse_send(&v(&["CONFIRM"])).unwrap().confirm);
        assert_eq!(parse_send(&v(&["EPHEMERAL", "CONFIRM"])).unwrap_err(), errors::EPHEMERAL_CONFLICT);
        assert_eq!(parse_send(&v(&["DEDUP", "k", "EPHEMERAL"])).unwrap_err(), errors::EPHEMERAL_CONFLICT);
    }

    #[test]
    fn read_options() {
        let o = parse_read(&v(&["COUNT", "3", "BLOCK", "0", "NOACK"])).unwrap();
        assert_eq!(
            o,
            ReadOptions {
                count: 3,
                block_ms: Some(0),
                lease_ms: None,
                noack: true,
                as_agent: None,
                min: None
            }
        );
        assert_eq!(parse_read(&[]).unwrap().count, 1);
        assert!(parse_read(&v(&["COUNT", "0"])).is_err());
        assert!(parse_read(&v(&["LEASE", "0"])).is_err());
        assert!(parse_read(&v(&["NOACK", "NOACK"])).is_err());
        assert!(parse_read(&v(&["BLOCK", "-5"])).is_err());
        assert_eq!(parse_read(&v(&["BLOCK", "10", "MIN", "3"])).unwrap().min, Some(3));
        assert_eq!(parse_read(&v(&["MIN", "3"])).unwrap_err(), errors::MIN_NEEDS_BLOCK);
        assert!(parse_read(&v(&["BLOCK", "10", "MIN", "0"])).is_err());
    }

    #[test]
    fn ranges_and_nack() {
        let r = parse_range(&v(&["5", "+", "COUNT", "2"])).unwrap();
        assert_eq!((r.start, r.end, r.count), (MessageId::new(5, 0), MessageId::MAX, 2));
        assert_eq!(parse_range(&v(&["COUNT", "2"])).unwrap().start, MessageId::MIN);
        assert!(parse_range(&v(&["x", "+"])).is_err());
        assert!(parse_range(&v(&["-"])).is_err());
        let nack = ["DELAY", "AS"];
        let n = parse_settle(&v(&["1-0", "2-0", "DELAY", "50"]), &nack).unwrap();
        assert_eq!(n.ids.len(), 2);
        assert_eq!(n.delay_ms, 50);
        let n = parse_settle(&v(&["1-0", "AS", "bob", "delay", "5"]), &nack).unwrap();
        assert_eq!((n.ids.len(), n.delay_ms, n.as_agent.as_deref()), (1, 5, Some(&b"bob"[..])));
        assert!(parse_settle(&v(&["DELAY", "50"]), &nack).is_err());
        assert!(parse_settle(&v(&["nope"]), &nack).is_err());
        assert!(parse_settle(&v(&["1-0", "DELAY", "1", "DELAY", "2"]), &nack).is_err());
        assert!(parse_settle(&v(&["1-0", "DELAY", "1"]), &["AS"]).is_err());
        assert_eq!(
            parse_settle(&v(&["1-0", "DELAY"]), &nack).unwrap_err(),
            "ERR option 'DELAY' needs a value"
        );
    }

    #[test]
    fn create_and_dead() {
        let c = parse_create(&v(&["MAXLEN", "10", "MAXDELIVER", "3", "UPDATE"])).unwrap();
        assert_eq!((c.maxlen, c.max_deliveries, c.update), (Some(10), Some(3), true));
        assert!(parse_create(&v(&["LEASE", "0"])).is_err());
        assert_eq!(parse_dead(&v(&["PURGE", "ALL"])).unwrap().action, DeadAction::Purge(Selection::All));
        let d = parse_dead(&v(&["requeue", "1-0", "2-0", "as", "bob"])).unwrap();
        assert_eq!(
            d.action,
            DeadAction::Requeue(Selection::Ids(vec![MessageId::new(1, 0), MessageId::new(2, 0)]))
        );
        assert_eq!(d.as_agent.as_deref(), Some(&b"bob"[..]));
        let d = parse_dead(&v(&["LIST", "AS", "bob", "COUNT", "2"])).unwrap();
        assert_eq!(d.as_agent.as_deref(), Some(&b"bob"[..]));
        assert!(matches!(d.action, DeadAction::List(RangeOptions { count: 2, as_agent: None, .. })));
        assert!(parse_dead(&v(&["PURGE", "AS", "bob"])).is_err(), "no ids left");
        assert_eq!(parse_dead(&v(&["PURGE", "ALL", "AS", "b ob"])).unwrap_err(), errors::BAD_AGENT);
        assert!(parse_dead(&v(&["REQUEUE"])).is_err());
        assert!(parse_dead(&v(&["EXPLODE"])).is_err());
        assert!(parse_dead(&[]).is_err());
    }

    #[test]
    fn a_trailing_as() {
        let args = v(&["1-0", "AS", "bob"]);
        let (end, agent) = split_as(&args).unwrap();
        assert_eq!((end, agent.as_deref()), (1, Some(&b"bob"[..])));
        let args = v(&["1-0", "as", "bob"]);
        assert_eq!(split_as(&args).unwrap().1.as_deref(), Some(&b"bob"[..]), "case-insensitive");
        let args = v(&["AS", "bob", "x"]);
        assert_eq!(split_as(&args).unwrap(), (3, None), "only at the end");
        assert_eq!(split_as(&v(&["AS", ""])).unwrap_err(), errors::BAD_AGENT);
        let long = "a".repeat(MAX_FIELD_BYTES + 1);
        assert_eq!(
            split_as(&[b"AS", long.as_bytes()]).unwrap_err(),
            errors::field_too_long("AS", long.len(), MAX_FIELD_BYTES)
        );
        let r = parse_range(&v(&["AS", "bob"])).unwrap();
        assert_eq!(
            (r.start, r.end, r.as_agent.as_deref()),
            (MessageId::MIN, MessageId::MAX, Some(&b"bob"[..]))
        );
        let r = parse_range(&v(&["-", "5", "AS", "bob", "COUNT", "1"])).unwrap();
        assert_eq!((r.end, r.count), (MessageId::parse_bound(b"5", false).unwrap(), 1));
        assert!(parse_range(&v(&["AS", "bob", "AS", "eve"])).is_err());
        assert_eq!(only_as(&[]), Ok(None));
        assert_eq!(only_as(&v(&["as", "bob"])), Ok(Some(b"bob".to_vec())));
        assert_eq!(only_as(&v(&["x"])).unwrap_err(), "ERR unknown option 'x'");
        assert_eq!(only_as(&v(&["AS"])).unwrap_err(), "ERR option 'AS' needs a value");
        assert_eq!(only_as(&v(&["AS", "a", "AS", "b"])).unwrap_err(), "ERR option 'AS' given more than once");
        // READ, ACK and NACK bound the agent's name as every other command does.
        let too_long = errors::field_too_long("AS", long.len(), MAX_FIELD_BYTES);
        assert_eq!(parse_read(&[b"AS", long.as_bytes()]).unwrap_err(), too_long);
        assert_eq!(parse_settle(&[b"1-0", b"AS", long.as_bytes()], &["AS"]).unwrap_err(), too_long);
        assert_eq!(parse_settle(&[b"1-0", b"AS", long.as_bytes()], &["DELAY", "AS"]).unwrap_err(), too_long);
    }

    #[test]
    fn names() {
        assert!(check_name(b"{team}alice").is_ok());
        assert!(check_name(b"").is_err());
        assert!(check_name(b"\xc3").is_err());
    }

    #[test]
    fn options_parsed_here_for_thread_quota_and_sub() {
        assert_eq!(parse_thread(&[]), Ok(ThreadOptions { count: 0, as_agent: None }));
        assert_eq!(parse_thread(&v(&["count", "7"])).unwrap().count, 7);
        let t = parse_thread(&v(&["AS", "bob", "COUNT", "7"])).unwrap();
        assert_eq!((t.count, t.as_agent.as_deref()), (7, Some(&b"bob"[..])));
        assert_eq!(parse_thread(&v(&["LIMIT", "7"])).unwrap_err(), "ERR unknown option 'LIMIT'");
        assert_eq!(parse_thread(&v(&["COUNT"])).unwrap_err(), "ERR option 'COUNT' needs a value");
        assert_eq!(parse_quota(b"reset", &[], 9), Ok(None));
        assert_eq!(parse_quota(b"RESET", &v(&["BURST", "2"]), 9).unwrap_err(), errors::SYNTAX);
        assert_eq!(parse_quota(b"5", &[], 9), Ok(Some((5, 9))));
        assert_eq!(parse_quota(b"5", &v(&["burst", "2"]), 9), Ok(Some((5, 2))));
        assert!(parse_quota(b"5", &v(&["BURST", "0"]), 9).is_err());
        let s = parse_sub(&v(&["mb", "a.*", "FROM", "bob", "minpriority", "3"])).unwrap();
        assert_eq!((s.filter.from.as_deref(), s.filter.min_priority, s.end), (Some(&b"bob"[..]), Some(3), 2));
        assert_eq!(s.as_agent, None);
        let s = parse_sub(&v(&["mb", "a.*", "b.*", "AS", "bob", "TYPE", "t"])).unwrap();
        assert_eq!((s.as_agent.as_deref(), s.end), (Some(&b"bob"[..]), 3));
        assert_eq!(
            parse_sub(&v(&["mb", "p", "FROM"])).unwrap().end,
            3,
            "a last FROM without a value is a pattern"
        );
        assert_eq!(parse_sub(&v(&["mb", "FROM", "x"])).unwrap_err(), errors::SYNTAX, "no pattern left");
        assert_eq!(parse_sub(&v(&["mb", "AS", "x"])).unwrap_err(), errors::SYNTAX, "no pattern left");
        assert_eq!(
            parse_sub(&v(&["mb", "p", "TYPE", "a", "TYPE", "b"])).unwrap_err(),
            "ERR option 'TYPE' given more than once"
        );
    }
}
