//! The SDK's global allocator on `wasm32`: a bump allocator over linear memory.
//!
//! A plugin instance lives for exactly one call, so freeing is nearly pointless; what
//! matters per call is not growing memory. Growing makes the host change page
//! protections on every call (and again when the slot is reused), which costs far more
//! than the call itself. This allocator first uses the free part of the initial memory
//! (the SDK build links with `--initial-memory`, see `payloom-plugin-build`) and only then
//! calls `memory.grow`. Freeing or growing the most recent block happens in place, which
//! covers the usual `Vec`/`String` growth pattern.

// A global allocator is unsafe by nature; each unsafe step says why it holds.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::UnsafeCell;
use core::ptr;

const PAGE_BYTES: usize = 65_536;

struct Bump {
    /// `(next free byte, end of memory, start of the most recent block)`; zero until first use.
    state: UnsafeCell<(usize, usize, usize)>,
}

// SAFETY: core wasm32 is single-threaded; the state is never touched concurrently.
unsafe impl Sync for Bump {}

unsafe extern "C" {
    /// First byte after static data and the stack, placed by the linker.
    static __heap_base: u8;
}

impl Bump {
    /// Reserves `[start, start + size)`, growing memory if needed.
    fn take(&self, start: usize, size: usize) -> bool {
        // SAFETY: single-threaded, see `Sync` above; no other reference is live.
        let state = unsafe { &mut *self.state.get() };
        let Some(new_next) = start.checked_add(size) else {
            return false;
        };
        if new_next > state.1 {
            let pages = (new_next - state.1).div_ceil(PAGE_BYTES);
            if wasm32::memory_grow(0, pages) == usize::MAX {
                return false;
            }
            state.1 += pages * PAGE_BYTES;
        }
        state.0 = new_next;
        true
    }

    fn state(&self) -> &mut (usize, usize, usize) {
        // SAFETY: single-threaded, see `Sync` above; callers hold no other reference.
        let state = unsafe { &mut *self.state.get() };
        if state.0 == 0 {
            // Only the address of the linker symbol is taken, never its value.
            state.0 = ptr::addr_of!(__heap_base) as usize;
            state.1 = wasm32::memory_size(0) * PAGE_BYTES;
        }
        state
    }
}

// SAFETY: blocks are disjoint ranges of linear memory handed out once each; a block is
// reused only after `dealloc` of the most recent one, as `GlobalAlloc` permits.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let next = self.state().0;
        let start = (next + layout.align() - 1) & !(layout.align() - 1);
        if !self.take(start, layout.size()) {
            return ptr::null_mut();
        }
        self.state().2 = start;
        start as *mut u8
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let state = self.state();
        if block as usize == state.2 && state.2 + layout.size() == state.0 {
            state.0 = state.2;
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = block as usize;
        let is_last = {
            let state = self.state();
            start == state.2 && start + layout.size() == state.0
        };
        if is_last && self.take(start, new_size) {
            return block;
        }
        // SAFETY: the caller's contract for `realloc`; the new layout keeps the alignment.
        let fresh =
            unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
        if !fresh.is_null() {
            // SAFETY: both blocks are valid for the smaller size and do not overlap.
            unsafe { ptr::copy_nonoverlapping(block, fresh, layout.size().min(new_size)) };
        }
        fresh
    }
}

#[global_allocator]
static ALLOCATOR: Bump = Bump {
    state: UnsafeCell::new((0, 0, 0)),
};
