//! Keeping a mailbox's time-driven state honest after a visit: what fell due is
//! applied and replicated (`apply_due`), the schedule learns the next deadline
//! (`reschedule`), and messages that became dead letters are reported once, the
//! same way whoever killed them (`report_dead`).

#![forbid(unsafe_code)]

use redis_module::{Context, RedisString};

use crate::core::mailbox::Scheduled;
use crate::core::{DeadReason, Mailbox, MessageId, SweepOutcome};
use crate::counters;
use crate::effects::Effect;
use crate::receipt_queue::{self, Outcome};
use crate::schedule;
use crate::server::context::is_master;
use crate::server::replicate::replicate;
use crate::server::signal::{notify, signal_ready};
use crate::types::mailbox::tracked;

/// On the master, applies whatever is due at `now` to one mailbox, counts it,
/// replicates it as explicit effects and wakes readers if messages became ready.
pub fn apply_due(ctx: &Context, key: &RedisString, mailbox: &mut Mailbox, now: u64) {
    // Nothing due (the common case): one look at the earliest deadline.
    if mailbox.next_deadline().is_none_or(|at| at > now) || !is_master(ctx) {
        return;
    }
    let expiring = mailbox.expiring(now);
    let before = mailbox.counts();
    let SweepOutcome { expired, requeued, dead, leases_ended } = tracked(mailbox, |mb| mb.sweep(now));
    let after = mailbox.counts();
    let dedup_forgotten = after.dedup_keys != before.dedup_keys;
    counters::LEASE_EXPIRED.add(leases_ended);
    let name = key.as_slice();
    receipt_queue::queue(ctx, name, expiring, Outcome::Expired, None, None, now);
    if !expired.is_empty() {
        counters::EXPIRED.add(expired.len());
        replicate(ctx, name, &Effect::Remove { ids: expired });
        notify(ctx, c"mailbox.expired", key);
    }
    if !requeued.is_empty() {
        replicate(ctx, name, &Effect::Requeue { ids: requeued });
        notify(ctx, c"mailbox.requeued", key);
        signal_ready(ctx, key);
    }
    report_dead(ctx, key, mailbox, dead, DeadReason::MaxDeliveries, None, now);
    if dedup_forgotten {
        replicate(ctx, name, &Effect::ForgetDedup { now });
    }
}

/// After `ids` of mailbox `key` became dead letters for `reason` (already applied):
/// queues their receipts (`by` the agent that settled them, `None` for time or
/// overflow), counts them, replicates the `KILL` and raises `mailbox.deadlettered`.
pub fn report_dead(
    ctx: &Context,
    key: &RedisString,
    mailbox: &Mailbox,
    ids: Vec<MessageId>,
    reason: DeadReason,
    by: Option<&[u8]>,
    now: u64,
) {
    if ids.is_empty() {
        return;
    }
    let name = key.as_slice();
    let envs: Vec<_> = ids.iter().filter_map(|id| mailbox.dead_letter(id)).map(|d| d.env.clone()).collect();
    receipt_queue::queue(ctx, name, envs, Outcome::Dead, by, Some(reason.as_str()), now);
    counters::DEAD_LETTERED.add(ids.len());
    replicate(ctx, name, &Effect::Kill { at: now, reason, ids });
    notify(ctx, c"mailbox.deadlettered", key);
}

/// Tells the sweeper when this mailbox next needs attention.
pub fn reschedule(ctx: &Context, key: &RedisString, mailbox: &Mailbox) {
    let deadline = mailbox.next_deadline();
    // The sweeper has it already (the tick and a rebuild keep this hint true).
    if mailbox.hints.scheduled.get() == Scheduled::Told(deadline) {
        return;
    }
    schedule::schedule(ctx, key.as_slice(), deadline);
    mailbox.hints.scheduled.set(Scheduled::Told(deadline));
}
