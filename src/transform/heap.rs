//! How much memory a template render holds at its peak, on the thread running it.
//!
//! MiniJinja bounds a render with one budget ("fuel") that counts both steps and the bytes of
//! text and lists built, so running out of it does not say which of the two was spent. The
//! budget is the hard bound; this counter only tells an endless loop (`TRANSFORM_TIMEOUT`) from
//! a render that built too much (`TRANSFORM_MEMORY`). It counts on the measuring thread only,
//! while a measurement is on; everywhere else it costs one thread-local read per allocation.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

use mimalloc::MiMalloc as Inner;

/// The process allocator: mimalloc, counting on threads that measure. A profile of an order's
/// way through (receipt, transformation, delivery) put about a third of the request threads'
/// time, and a tenth of the transformation threads', in the system allocator (`malloc`, `free`
/// and the consolidation of freed blocks): JSON trees and buffers are made and freed per order
/// on every thread, which mimalloc's per-thread free lists serve faster.
pub struct ThreadHeap;

#[global_allocator]
static HEAP: ThreadHeap = ThreadHeap;

thread_local! {
    // Plain `Cell`s with const initialisers: no destructor and no lazy set-up, so reading
    // them from inside the allocator can neither allocate nor fail.
    static ON: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            // Freeing what was allocated before the measurement began counts as nothing.
            let live = LIVE.get().saturating_add(delta).max(0);
            LIVE.set(live);
            if live > PEAK.get() {
                PEAK.set(live);
            }
        }
    });
}

// SAFETY: every call is delegated to `Inner` unchanged; this type only counts sizes.
unsafe impl GlobalAlloc for ThreadHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = Inner.alloc(layout);
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = Inner.alloc_zeroed(layout);
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Inner.dealloc(ptr, layout);
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = Inner.realloc(ptr, layout, new_size);
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// mimalloc's options (`mi_option_e` in `mimalloc.h` of the v3 sources that the locked
/// `libmimalloc-sys` builds by default) and the environment variables that set them.
const ARENA_EAGER_COMMIT: (std::ffi::c_int, &str) = (4, "MIMALLOC_ARENA_EAGER_COMMIT");
const PURGE_DELAY: (std::ffi::c_int, &str) = (15, "MIMALLOC_PURGE_DELAY");

extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Makes the allocator hand freed memory back to the system at once (and commit the regions
/// it reserves from here on page by page), unless the environment sets these options. By
/// default mimalloc keeps freed pages for a second: the bench measured the server at about
/// twice the system allocator's memory (idle 55 against 30 MB, under load 110–127 against
/// 64 MB); purging at once brought that to 42 and 106 MB for the same CPU saved. The region
/// reserved at start-up is committed before `main` runs, so only the environment reaches it:
/// with `MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0` one run gave 33 and 64 MB.
/// Call first thing in `main`, before any other thread starts.
pub fn return_memory_promptly() {
    for (option, variable) in [ARENA_EAGER_COMMIT, PURGE_DELAY] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: sets one of mimalloc's tunables (a plain write), from `main` before any
            // other thread exists.
            unsafe { mi_option_set(option, 0) };
        }
    }
}

/// Turns the count off when the measured work ends, even by a panic.
struct Off;

impl Drop for Off {
    fn drop(&mut self) {
        ON.set(false);
    }
}

/// Runs `f` and returns what it returned with the most memory, in bytes, it held at once
/// beyond what was held when it started.
pub fn peak<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LIVE.set(0);
    PEAK.set(0);
    ON.set(true);
    let off = Off;
    let out = f();
    drop(off);
    (out, PEAK.get().max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_the_peak_of_the_work_only() {
        let before = vec![0u8; 1 << 20];
        let ((), held) = peak(|| {
            let a = vec![1u8; 8 << 20];
            let b = vec![2u8; 4 << 20];
            drop(a);
            drop(b);
            let _small = vec![3u8; 1 << 20];
        });
        assert!((12 << 20..13 << 20).contains(&held), "{held}");
        drop(before);
        let ((), held) = peak(|| {
            for i in 0..1000 {
                drop(std::hint::black_box(i.to_string()));
            }
        });
        assert!(held < 4096, "{held}");
    }
}
