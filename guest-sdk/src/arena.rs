//! The allocator of an SDK component: allocations are bumped out of a 64 KiB
//! arena while it has room, and taken from the C library's `malloc` (Rust's
//! `System`) after that. Owns which allocations the arena serves and how they
//! are given back; must not serve anything it cannot give back to the right
//! allocator (every pointer it is handed is checked against its range).
//!
//! Why: weft runs each invocation in a fresh instance and discards it after,
//! and what an SDK component allocates in that time is mostly small and
//! short-lived — the context's strings as they are decoded, the changes sent
//! back. wasi-libc's dlmalloc took about a fifth of the guest's time in
//! `weft bench sandbox`'s step (some fifty allocations at 20–30 ns each);
//! bumping a pointer takes a few. The arena reuses freed memory only when it
//! was the latest allocation (so a `Vec` growing at the end grows in place);
//! the rest is not reused, which bounds what is wasted to the arena's 64 KiB per
//! instance, and whatever does not fit goes to dlmalloc as before.
//!
//! Compiled into a component only with the `arena` feature (on by default): a
//! plug-in that brings its own `#[global_allocator]` turns it off with
//! `default-features = false`. Natively the arena exists for its unit tests
//! only.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, UnsafeCell};

/// The component's allocator (a `wasm32-wasip2` component has one thread).
/// 64 KiB: room for a large context's decoded strings many times over, and a
/// bounded loss for an instance that frees out of order.
#[cfg(all(
    target_arch = "wasm32",
    target_os = "wasi",
    not(target_feature = "atomics"),
    feature = "arena"
))]
#[global_allocator]
static ALLOCATOR: Arena<{ 64 << 10 }> = Arena::new();

/// `N` bytes handed out front to back; `top` is how many are taken.
#[repr(C, align(16))]
pub(crate) struct Arena<const N: usize> {
    bytes: UnsafeCell<[u8; N]>,
    top: Cell<usize>,
}

// SAFETY: only a component's allocator is shared (a static), and a
// `wasm32` target without atomics (`wasm32-wasip2`) runs one thread: no two
// calls overlap. With atomics (threads) there is no arena.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl<const N: usize> Sync for Arena<N> {}

impl<const N: usize> Arena<N> {
    pub(crate) const fn new() -> Self {
        Arena {
            bytes: UnsafeCell::new([0; N]),
            top: Cell::new(0),
        }
    }

    fn base(&self) -> *mut u8 {
        self.bytes.get().cast()
    }

    /// Where `ptr` lies in the arena, if it does.
    fn offset_of(&self, ptr: *mut u8) -> Option<usize> {
        let offset = (ptr as usize).wrapping_sub(self.base() as usize);
        (offset < N).then_some(offset)
    }

    /// `layout`'s bytes from the arena, or `None` when they do not fit.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let base = self.base() as usize;
        // Align the address, not the offset: the arena itself is 16-aligned,
        // a layout may ask for more.
        let start = (base + self.top.get()).checked_next_multiple_of(layout.align())? - base;
        let end = start.checked_add(layout.size())?;
        if end > N {
            return None;
        }
        self.top.set(end);
        Some(self.base().wrapping_add(start))
    }

    /// Whether the allocation at `offset` of `old` bytes can become `new`
    /// bytes where it is: any shrink can; a growth only of the latest
    /// allocation, into room the arena still has.
    fn resize_in_place(&self, offset: usize, old: usize, new: usize) -> bool {
        let is_latest = offset + old == self.top.get();
        if is_latest && offset + new <= N {
            self.top.set(offset + new);
            true
        } else {
            new <= old
        }
    }
}

// SAFETY: every pointer the arena returns lies inside its bytes, aligned as
// asked, and is handed out once until given back; pointers outside it are
// `System`'s and go back to `System`.
unsafe impl<const N: usize> GlobalAlloc for Arena<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: the caller's contract for `layout`, passed on.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => {
                // Given-back bytes are reused: they are not zero any more.
                // SAFETY: `bump` returned `layout.size()` bytes at `ptr`.
                unsafe { ptr.write_bytes(0, layout.size()) };
                ptr
            }
            // SAFETY: as in `alloc`.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.offset_of(ptr) {
            // Giving back is shrinking to nothing: the latest allocation's
            // bytes return to the arena, any other's stay taken.
            Some(offset) => {
                self.resize_in_place(offset, layout.size(), 0);
            }
            // SAFETY: not the arena's, so `System` allocated it with `layout`.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(offset) = self.offset_of(ptr) else {
            // SAFETY: not the arena's, so `System`'s; the contract is the caller's.
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        if self.resize_in_place(offset, layout.size(), new_size) {
            return ptr;
        }
        // SAFETY: `realloc`'s contract makes `new_size` with this alignment a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size (the caller's contract).
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both hold at least the smaller size, and the new block
            // was just taken, so they do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    /// Allocations are aligned as asked, do not overlap, and come from the
    /// arena until it is full; then `System` serves them.
    #[test]
    fn bumps_aligned_until_full_then_falls_back() {
        let arena = Box::new(Arena::<256>::new());
        unsafe {
            let a = arena.alloc(layout(3, 1));
            let b = arena.alloc(layout(8, 8));
            let c = arena.alloc(layout(32, 32));
            for (p, align) in [(a, 1), (b, 8), (c, 32)] {
                assert!(arena.offset_of(p).is_some());
                assert_eq!(p as usize % align, 0);
            }
            assert!(b as usize >= a as usize + 3);
            assert!(c as usize >= b as usize + 8);
            let big = arena.alloc(layout(512, 8));
            assert!(
                !big.is_null() && arena.offset_of(big).is_none(),
                "past the arena: System's"
            );
            big.write_bytes(7, 512);
            arena.dealloc(big, layout(512, 8));
            let rest = arena.alloc(layout(100, 1));
            assert!(
                arena.offset_of(rest).is_some(),
                "what still fits is the arena's"
            );
        }
    }

    /// The latest allocation is given back and its bytes handed out again;
    /// an earlier one stays taken.
    #[test]
    fn only_the_latest_allocation_is_given_back() {
        let arena = Box::new(Arena::<256>::new());
        unsafe {
            let a = arena.alloc(layout(16, 8));
            let b = arena.alloc(layout(16, 8));
            arena.dealloc(a, layout(16, 8));
            assert_eq!(
                arena.alloc(layout(16, 8)),
                b.wrapping_add(16),
                "a stays taken"
            );
            arena.dealloc(b.wrapping_add(16), layout(16, 8));
            assert_eq!(
                arena.alloc(layout(16, 8)),
                b.wrapping_add(16),
                "the latest is reused"
            );
        }
    }

    /// The latest allocation grows in place; an earlier one moves with its
    /// bytes; one that outgrows the arena moves to `System` with its bytes.
    #[test]
    fn realloc_grows_in_place_or_moves_with_the_bytes() {
        let arena = Box::new(Arena::<256>::new());
        unsafe {
            let a = arena.alloc(layout(8, 8));
            a.copy_from_nonoverlapping(b"abcdefgh".as_ptr(), 8);
            let grown = arena.realloc(a, layout(8, 8), 64);
            assert_eq!(grown, a, "the latest grows where it is");
            let b = arena.alloc(layout(8, 8));
            let moved = arena.realloc(grown, layout(64, 8), 100);
            assert_ne!(moved, grown);
            assert!(arena.offset_of(moved).is_some());
            assert_eq!(std::slice::from_raw_parts(moved, 8), b"abcdefgh");
            let out = arena.realloc(moved, layout(100, 8), 4096);
            assert!(
                arena.offset_of(out).is_none(),
                "too big for the arena: System's"
            );
            assert_eq!(std::slice::from_raw_parts(out, 8), b"abcdefgh");
            let shrunk = arena.realloc(out, layout(4096, 8), 16);
            assert_eq!(std::slice::from_raw_parts(shrunk, 8), b"abcdefgh");
            arena.dealloc(shrunk, layout(16, 8));
            arena.dealloc(b, layout(8, 8));
        }
    }

    /// Zeroed memory is zero even where given-back bytes are handed out again.
    #[test]
    fn zeroed_allocations_are_zero_after_reuse() {
        let arena = Box::new(Arena::<256>::new());
        unsafe {
            let a = arena.alloc(layout(32, 8));
            a.write_bytes(0xAB, 32);
            arena.dealloc(a, layout(32, 8));
            let z = arena.alloc_zeroed(layout(32, 8));
            assert_eq!(z, a);
            assert!(std::slice::from_raw_parts(z, 32).iter().all(|b| *b == 0));
        }
    }
}
