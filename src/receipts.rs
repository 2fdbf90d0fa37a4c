//! Delivery receipts (`CONFIRM`): when a confirmed message leaves a mailbox — acked,
//! dead-lettered or expired — a receipt lands in the sender's mailbox (or its
//! `reply_to`). Receipts are ordinary messages and are never confirmed themselves.
//! Their sender is `RECEIPT_SENDER`, a name no ACL user can have (Redis refuses user
//! names with spaces), so a receipt never reads as words of the agent that settled
//! the message; who settled it is the payload's `by`.

use std::cell::{Cell, RefCell};

use redis_module::{raw, Context};
use serde_json::json;

use crate::acl::Caller;
use crate::args::SendOptions;
use crate::commands::send::send_one;
use crate::core::namespace;
use crate::core::{Envelope, EnvelopeRef};
use crate::stats;

pub const CONTENT_TYPE: &str = "application/vnd.mailbox.receipt+json";

/// The `from` of every receipt.
pub const RECEIPT_SENDER: &[u8] = b"mailbox receipt";

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Acked,
    Dead,
    Expired,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Acked => "acked",
            Outcome::Dead => "dead",
            Outcome::Expired => "expired",
        }
    }
}

thread_local! {
    /// Set while a receipt is being stored: a receipt that pushes a confirmed
    /// message out of a full mailbox sends no receipt in turn (no cascades).
    static SENDING: Cell<bool> = const { Cell::new(false) };
}

/// The receipt's payload: `{"id", "outcome", "mailbox", "by", "at"}` plus `reason` for
/// a dead letter.
pub fn payload(
    env: &Envelope,
    outcome: Outcome,
    mailbox: &[u8],
    by: &[u8],
    at: u64,
    reason: Option<&str>,
) -> Vec<u8> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut v = json!({
        "id": env.id().to_string(),
        "outcome": outcome.as_str(),
        "mailbox": text(mailbox),
        "by": text(by),
        "at": at,
    });
    if let (Some(reason), Some(map)) = (reason, v.as_object_mut()) {
        map.insert("reason".into(), reason.into());
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

struct Pending {
    db: i32,
    mailbox: Vec<u8>,
    env: EnvelopeRef,
    outcome: Outcome,
    by: Option<Vec<u8>>,
    reason: Option<&'static str>,
    at: u64,
}

thread_local! {
    /// Receipts decided during a command, stored once the command is done with its
    /// own mailbox (a receipt may land in that very mailbox).
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
}

/// Queues the receipts for `envs` that asked for one. `mailbox` is where they
/// were; `by` the agent that settled them (None: the mailbox's own agent, for
/// time-driven outcomes). `flush` stores them.
pub fn queue(
    ctx: &Context,
    mailbox: &[u8],
    envs: impl IntoIterator<Item = EnvelopeRef>,
    outcome: Outcome,
    by: Option<&[u8]>,
    reason: Option<&'static str>,
    at: u64,
) {
    let db = selected_db(ctx);
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        for env in envs.into_iter().filter(|e| e.confirm()) {
            p.push(Pending {
                db,
                mailbox: mailbox.to_vec(),
                env,
                outcome,
                by: by.map(<[u8]>::to_vec),
                reason,
                at,
            });
        }
    });
}

fn selected_db(ctx: &Context) -> i32 {
    unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |f| f(ctx.ctx)) }
}

fn select_db(ctx: &Context, db: i32) -> bool {
    unsafe {
        raw::RedisModule_SelectDb.map_or(1, |f| f(ctx.ctx, db)) == raw::Status::Ok as std::os::raw::c_int
    }
}

/// Stores every queued receipt. Called at the end of each command (and timer tick)
/// that can settle messages, after it let go of its own mailbox.
pub fn flush(ctx: &Context) {
    loop {
        let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
        if pending.is_empty() {
            return;
        }
        let home = selected_db(ctx);
        for p in pending {
            if p.db != home && !select_db(ctx, p.db) {
                stats::RECEIPTS_DROPPED.incr();
                continue;
            }
            send(ctx, &p);
            if p.db != home {
                select_db(ctx, home);
            }
        }
    }
}

fn send(ctx: &Context, p: &Pending) {
    let env = &p.env;
    if SENDING.with(Cell::get) {
        stats::RECEIPTS_DROPPED.incr();
        return;
    }
    let parts = env.parts();
    let target =
        parts.reply_to.map_or_else(|| namespace::agent_mailbox(&p.mailbox, parts.from), <[u8]>::to_vec);
    // A receipt stays in the slot of the mailbox it reports on, and goes only to a
    // name commands take (sends check this too; a message from before they did may not).
    let cross_slot =
        crate::commands::in_cluster(ctx) && namespace::hash_tag(&target) != namespace::hash_tag(&p.mailbox);
    let bad_name =
        crate::args::check_name(&target).is_err() || crate::commands::check_not_reserved(&target).is_err();
    if cross_slot || bad_name {
        stats::RECEIPTS_DROPPED.incr();
        return;
    }
    let by = p.by.clone().unwrap_or_else(|| namespace::local_part(&p.mailbox));
    let opts = SendOptions {
        content_type: Some(CONTENT_TYPE.as_bytes().to_vec()),
        correlation: Some(env.id().to_string().into_bytes()),
        thread: parts.thread.map(<[u8]>::to_vec),
        ..SendOptions::default()
    };
    let body = payload(env, p.outcome, &p.mailbox, &by, p.at, p.reason);
    let caller = Caller { agent: RECEIPT_SENDER.to_vec(), via: None };
    let key = crate::commands::rstring(ctx, target.as_slice());
    SENDING.with(|s| s.set(true));
    let sent = send_one(ctx, &key, &body, opts, &caller, p.at);
    SENDING.with(|s| s.set(false));
    match sent {
        Ok(_) => stats::RECEIPTS.incr(),
        Err(_) => stats::RECEIPTS_DROPPED.incr(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::MessageId;
    use crate::core::Parts;

    #[test]
    fn receipt_payload_is_json_with_the_outcome() {
        let env = Envelope::new(Parts {
            id: MessageId::new(7, 1),
            from: b"alice",
            to: b"bob",
            ts: 7,
            confirm: true,
            ..Parts::default()
        });
        let v: serde_json::Value =
            serde_json::from_slice(&payload(&env, Outcome::Dead, b"bob", b"bob", 99, Some("maxdeliveries")))
                .unwrap();
        assert_eq!(v["id"], "7-1");
        assert_eq!(v["outcome"], "dead");
        assert_eq!(v["reason"], "maxdeliveries");
        assert_eq!(v["at"], 99);
    }
}
