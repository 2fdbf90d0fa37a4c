//! The global allocator: Redis's own once the module is loaded (so `maxmemory`,
//! `INFO memory` and `MEMORY USAGE` see every byte), the system allocator in unit
//! tests and fuzzers, where no Redis is there. Redis's allocator is installed at
//! the very start of `RedisModule_OnLoad`, before the module allocates anything,
//! so no block is ever freed by the other allocator.

use std::alloc::{GlobalAlloc, Layout, System};

use redis_module::alloc::RedisAlloc;
use redis_module::raw;

pub struct MailboxAlloc;

fn redis_ready() -> bool {
    // SAFETY: reads of two function-pointer statics the module API fills in once, at
    // the start of `OnLoad`, before any other thread of the module exists.
    unsafe {
        std::ptr::addr_of!(raw::RedisModule_Alloc).read().is_some()
            && std::ptr::addr_of!(raw::RedisModule_Free).read().is_some()
    }
}

unsafe impl GlobalAlloc for MailboxAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if redis_ready() {
            RedisAlloc.alloc(layout)
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if redis_ready() {
            RedisAlloc.dealloc(ptr, layout)
        } else {
            System.dealloc(ptr, layout)
        }
    }
}
