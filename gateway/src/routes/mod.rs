//! The REST routes under `/v1`, one file per area, and what they share.

pub mod admin;
pub mod health;
pub mod mailboxes;
pub mod topics;

use utoipa::IntoResponses;

use crate::problem::Problem;

/// The error statuses every authenticated route may answer with (see the README's
/// error table).
#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum Errors {
    /// Bad input: malformed JSON or parameters, or a module `ERR` about the arguments.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// Missing, unknown, expired or revoked token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The module's `NOPERM`, or a scope the token lacks.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such mailbox or message.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The mailbox exists already, is full, holds another type, or the thread is at its limit.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// The body or the payload is over a limit.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The body has no content type (payload routes), or is not JSON (other routes).
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// The token's request rate or the agent's send quota is exceeded, or this client address
    /// sent too many unknown tokens; see `Retry-After`.
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Problem),
    /// The request headers are over the size limit.
    #[response(status = 431, content_type = "application/problem+json")]
    HeadersTooLarge(Problem),
    /// Redis is unreachable or not ready (circuit open, timeout, `OOM`, `READONLY`); see `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}
