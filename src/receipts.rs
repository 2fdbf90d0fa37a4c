//! Delivery receipts (`CONFIRM`): when a confirmed message leaves a mailbox — acked,
//! dead-lettered or expired — a receipt lands in the sender's mailbox (or its
//! `reply_to`). Receipts are ordinary messages and are never confirmed themselves.
//! Their sender is `RECEIPT_SENDER`, a name no ACL user can have (Redis refuses user
//! names with spaces), so a receipt never reads as words of the agent that settled
//! the message; who settled it is the payload's `by`.

#![forbid(unsafe_code)]

use std::cell::Cell;

use redis_module::Context;

use crate::access::{self, Caller};
use crate::args::SendOptions;
use crate::core::names;
use crate::counters;
use crate::delivery::send_one;
use crate::receipt_queue::{self, payload, Pending, CONTENT_TYPE, RECEIPT_SENDER};
use crate::server::context::{in_cluster, rstring, select_db, selected_db};

thread_local! {
    /// Set while a receipt is being stored: a receipt that pushes a confirmed
    /// message out of a full mailbox sends no receipt in turn (no cascades).
    static SENDING: Cell<bool> = const { Cell::new(false) };
}

/// Stores every queued receipt. Called at the end of each command (and timer tick)
/// that can settle messages, after it let go of its own mailbox.
pub fn flush(ctx: &Context) {
    loop {
        let pending = receipt_queue::take();
        if pending.is_empty() {
            return;
        }
        let home = selected_db(ctx);
        for p in pending {
            if p.db != home && !select_db(ctx, p.db) {
                counters::RECEIPTS_DROPPED.incr();
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
        counters::RECEIPTS_DROPPED.incr();
        return;
    }
    let parts = env.parts();
    let target = parts.reply_to.map_or_else(|| names::agent_mailbox(&p.mailbox, parts.from), <[u8]>::to_vec);
    // A receipt stays in the slot of the mailbox it reports on, and goes only to a
    // name commands take (sends check this too; a message from before they did may not).
    let cross_slot = in_cluster(ctx) && names::hash_tag(&target) != names::hash_tag(&p.mailbox);
    let bad_name = crate::args::check_name(&target).is_err() || access::check_not_reserved(&target).is_err();
    if cross_slot || bad_name {
        counters::RECEIPTS_DROPPED.incr();
        return;
    }
    let by = p.by.clone().unwrap_or_else(|| names::local_part(&p.mailbox));
    let opts = SendOptions {
        content_type: Some(CONTENT_TYPE.as_bytes().to_vec()),
        correlation: Some(env.id().to_string().into_bytes()),
        thread: parts.thread.map(<[u8]>::to_vec),
        ..SendOptions::default()
    };
    let body = payload(env, p.outcome, &p.mailbox, &by, p.at, p.reason);
    let caller = Caller { agent: RECEIPT_SENDER.to_vec(), via: None };
    let key = rstring(ctx, target.as_slice());
    SENDING.with(|s| s.set(true));
    let sent = send_one(ctx, &key, &body, opts, &caller, p.at);
    SENDING.with(|s| s.set(false));
    match sent {
        Ok(_) => counters::RECEIPTS.incr(),
        Err(_) => counters::RECEIPTS_DROPPED.incr(),
    }
}
