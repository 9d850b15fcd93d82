//! The fuzz harnesses of tern, as a library the fuzz targets call. The same
//! files are compiled into the main crate's `tests/fuzz_corpus.rs`, which runs
//! every saved input under plain `cargo test`, so the harnesses use only
//! tern's public API and crates tern already depends on.
//!
//! The fuzz binaries also get [`Capped`], an allocator that aborts on any
//! single allocation over [`ALLOCATION_CAP`]: without AddressSanitizer
//! (stable Rust) libFuzzer's `-malloc_limit_mb` cannot see allocations, and
//! "no allocation sized by the input" is one of the spool's promises.

use std::alloc::{GlobalAlloc, Layout, System};

#[path = "../harness/mod.rs"]
pub mod harness;

/// The largest single allocation a harness run may make.
pub const ALLOCATION_CAP: usize = 64 << 20;

/// The system allocator, refusing allocations over [`ALLOCATION_CAP`].
pub struct Capped;

// SAFETY: forwards to `System`, after a size check that only aborts.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

fn check(size: usize) {
    if size > ALLOCATION_CAP {
        // No allocation here: write the message with a fixed buffer.
        let msg = b"tern-fuzz: an allocation over the 64 MiB cap (sized by the input?)\n";
        unsafe { libc_write(2, msg.as_ptr(), msg.len()) };
        std::process::abort();
    }
}

extern "C" {
    #[link_name = "write"]
    fn libc_write(fd: i32, buf: *const u8, count: usize) -> isize;
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;
