//! Delivery receipts (`CONFIRM`), decided: when a confirmed message leaves a mailbox
//! — acked, dead-lettered or expired — a receipt is queued here, to be stored by
//! `receipts::flush` once the command is done with its own mailbox (a receipt may
//! land in that very mailbox, and storing one is a send).

#![forbid(unsafe_code)]

use std::cell::RefCell;

use redis_module::Context;
use serde_json::json;

use crate::core::{Envelope, EnvelopeRef};
use crate::server::context::selected_db;

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

/// A receipt decided, not yet stored: where the message was, and how it left.
pub struct Pending {
    pub db: i32,
    pub mailbox: Vec<u8>,
    pub env: EnvelopeRef,
    pub outcome: Outcome,
    pub by: Option<Vec<u8>>,
    pub reason: Option<&'static str>,
    pub at: u64,
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

/// Every queued receipt, in the order queued; the queue is left empty.
pub fn take() -> Vec<Pending> {
    PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()))
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
