//! The glue between the services and Redis's C API: keys, replication, keyspace
//! events and wake-ups, replies, the context, blocking. The FFI of the module's
//! runtime lives here (with the data types' callbacks in `types/ffi.rs`), each
//! `unsafe` block with the reason it is sound.

pub mod alloc;
pub mod block;
pub mod context;
pub mod keys;
pub mod replicate;
pub mod reply;
pub mod signal;
