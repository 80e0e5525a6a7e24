//! The filter's heap, made to survive a trap inside the allocator.
//!
//! Fluent Bit keeps calling the same instance after a trap. A trap in the middle of an
//! allocation (an interpreter stack overflow can strike anywhere) leaves the allocator's
//! books half-written, and the next allocation would corrupt memory or trap again. So the
//! filter allocates from an arena that knows when it was interrupted: the next call then
//! abandons it (its memory stays allocated: linear memory never shrinks) and starts a
//! fresh one above it; frees of blocks from an abandoned arena are ignored. Everything
//! the filter held in the old arena is forgotten, never dropped, and the filter starts
//! again from what the granted directories hold.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dlmalloc::Dlmalloc;

/// An allocation is under way: seen at the start of a call, a trap interrupted it.
static IN_ALLOCATOR: AtomicBool = AtomicBool::new(false);

/// Blocks below this address belong to abandoned arenas (or to static data).
static FLOOR: AtomicUsize = AtomicUsize::new(0);

/// The global allocator of a Fluent Bit filter module.
pub struct Arena(UnsafeCell<Dlmalloc>);

// SAFETY: a WebAssembly module runs one call at a time on one thread.
unsafe impl Sync for Arena {}

impl Arena {
    /// An arena; the first one grows from the module's memory like any allocator.
    pub const fn new() -> Self {
        Arena(UnsafeCell::new(Dlmalloc::new()))
    }

    /// Whether a trap interrupted the allocator.
    pub fn interrupted(&self) -> bool {
        IN_ALLOCATOR.load(Ordering::Relaxed)
    }

    /// Abandons the current arena for a fresh one above all memory in use.
    ///
    /// # Safety
    /// Nothing allocated so far may be used again: the caller forgets it all.
    pub unsafe fn abandon(&self) {
        FLOOR.store(
            core::arch::wasm32::memory_size(0) * 65536,
            Ordering::Relaxed,
        );
        // SAFETY: one call at a time; the old arena is forgotten, not freed.
        unsafe { std::ptr::write(self.0.get(), Dlmalloc::new()) };
        IN_ALLOCATOR.store(false, Ordering::Relaxed);
    }

    fn current(&self) -> *mut Dlmalloc {
        self.0.get()
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs an allocator operation with the interruption flag raised.
fn guarded<T>(operation: impl FnOnce() -> T) -> T {
    IN_ALLOCATOR.store(true, Ordering::Relaxed);
    let result = operation();
    IN_ALLOCATOR.store(false, Ordering::Relaxed);
    result
}

fn abandoned(ptr: *mut u8) -> bool {
    (ptr as usize) < FLOOR.load(Ordering::Relaxed)
}

// SAFETY: dlmalloc's operations, on one thread; blocks of abandoned arenas are never
// handed to the current one.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        guarded(|| unsafe { (*self.current()).malloc(layout.size(), layout.align()) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        guarded(|| unsafe { (*self.current()).calloc(layout.size(), layout.align()) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !abandoned(ptr) {
            guarded(|| unsafe { (*self.current()).free(ptr, layout.size(), layout.align()) })
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !abandoned(ptr) {
            return guarded(|| unsafe {
                (*self.current()).realloc(ptr, layout.size(), layout.align(), new_size)
            });
        }
        // A block of an abandoned arena moves to the current one, and stays where it was.
        let new =
            unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
        if !new.is_null() {
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        }
        new
    }
}
