//! QuickJS's allocator, metered: the memory limit of a JavaScript transformation.

use std::cell::Cell;
use std::rc::Rc;

use rquickjs::allocator::{Allocator, RustAllocator};

/// Counts what QuickJS holds and refuses allocations past the limit, noting that it did: an
/// out-of-memory exception cannot always be told from a thrown `null` otherwise.
pub(super) struct Meter {
    pub(super) used: Cell<usize>,
    pub(super) limit: usize,
    pub(super) refused: Cell<bool>,
}

/// The allocator QuickJS is given: `RustAllocator`, metered.
pub(super) struct Metered(pub(super) Rc<Meter>);

impl Metered {
    fn admit(&self, more: usize) -> bool {
        if self.0.used.get().saturating_add(more) > self.0.limit {
            self.0.refused.set(true);
            return false;
        }
        true
    }
}

// SAFETY: every call is delegated to `RustAllocator`; this type only counts sizes.
unsafe impl Allocator for Metered {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if !self.admit(size) {
            return std::ptr::null_mut();
        }
        let p = RustAllocator.alloc(size);
        if !p.is_null() {
            // SAFETY: `p` was just allocated by RustAllocator.
            let got = unsafe { RustAllocator::usable_size(p) };
            self.0.used.set(self.0.used.get() + got);
        }
        p
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        if !self.admit(count.saturating_mul(size)) {
            return std::ptr::null_mut();
        }
        let p = RustAllocator.calloc(count, size);
        if !p.is_null() {
            // SAFETY: `p` was just allocated by RustAllocator.
            let got = unsafe { RustAllocator::usable_size(p) };
            self.0.used.set(self.0.used.get() + got);
        }
        p
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        if !ptr.is_null() {
            let size = RustAllocator::usable_size(ptr);
            self.0.used.set(self.0.used.get().saturating_sub(size));
        }
        RustAllocator.dealloc(ptr)
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        let old = if ptr.is_null() {
            0
        } else {
            RustAllocator::usable_size(ptr)
        };
        if new_size > old && !self.admit(new_size - old) {
            return std::ptr::null_mut();
        }
        let p = RustAllocator.realloc(ptr, new_size);
        if !p.is_null() {
            let got = RustAllocator::usable_size(p);
            self.0.used.set(self.0.used.get().saturating_sub(old) + got);
        } else if new_size == 0 {
            self.0.used.set(self.0.used.get().saturating_sub(old));
        }
        p
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        RustAllocator::usable_size(ptr)
    }
}
