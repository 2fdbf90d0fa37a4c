//! The module's two data types: what a key holds and how it is saved, loaded,
//! digested and rewritten. `save` and `load` see only the `rdb` traits; the
//! pointers Redis hands over are turned into them in `ffi`.

// Denied, not forbidden: one child (an FFI home) allows it for itself.
#![deny(unsafe_code)]

pub mod ffi;
pub mod mailbox;
pub mod namespace;
pub mod rdb;
