//! The server's id clock: message ids are unique across all of this server's
//! mailboxes, not only within one, which keeps `correlation` unambiguous.

#![forbid(unsafe_code)]

use std::sync::Mutex;

use redis_module::RedisError;

use crate::core::MessageId;
use crate::errors;

/// The last id this server handed out or applied. New ids are later than it and
/// than the receiving mailbox's last id, so ids are unique across the server's
/// mailboxes too (not only within one), which keeps `correlation` unambiguous.
static LAST_ID: Mutex<MessageId> = Mutex::new(MessageId::MIN);

fn with_last_id<R>(f: impl FnOnce(&mut MessageId) -> R) -> R {
    match LAST_ID.lock() {
        Ok(mut g) => f(&mut g),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// A new id for a message to a mailbox whose last id is `last`; an error, never
/// an id already used, when no next id is left (see `MessageId::LIMIT_MS`).
pub fn new_id(last: MessageId, now: u64) -> Result<MessageId, RedisError> {
    with_last_id(|clock| advance(clock, last, now))
}

/// The id after both `clock` (the server's last id) and `last`, which `clock` moves to.
fn advance(clock: &mut MessageId, last: MessageId, now: u64) -> Result<MessageId, RedisError> {
    let id = MessageId::next_after((*clock).max(last), now);
    if !id.leaves_room() {
        return Err(RedisError::Str(errors::NO_NEXT_ID));
    }
    *clock = id;
    Ok(id)
}

/// Records an id that arrived from elsewhere (a replicated effect, a load), so
/// that ids made here after a promotion or restart come later.
pub fn observe(id: MessageId) {
    with_last_id(|g| *g = (*g).max(id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_id_is_handed_out_twice_at_the_limit() {
        let mut clock = MessageId::MIN;
        let last = MessageId::new(MessageId::LIMIT_MS - 1, u64::MAX - 1);
        let id = advance(&mut clock, last, 5).unwrap();
        assert_eq!(id, MessageId::new(MessageId::LIMIT_MS - 1, u64::MAX));
        // Past it there is no id left: an error each time, never the same id again.
        assert!(advance(&mut clock, id, 5).is_err());
        assert!(advance(&mut clock, MessageId::MAX, 5).is_err());
        assert!(advance(&mut clock, MessageId::MIN, 5).is_err(), "the server's clock is not moved back");
        assert_eq!(clock, id);
    }
}
