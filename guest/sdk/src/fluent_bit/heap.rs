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
//!
//! In front of dlmalloc, small blocks freed wait in a list per size class for the next
//! allocation of their class: dlmalloc's bookkeeping was 7 % of the instructions of a
//! session start, and the lists took 7 % off its fuel. A block in a list goes back to no
//! other class and never to dlmalloc, so the lists hold at most, for each class, what
//! the filter's blocks of that class once held at their peak.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dlmalloc::Dlmalloc;

/// An allocation is under way: seen at the start of a call, a trap interrupted it.
static IN_ALLOCATOR: AtomicBool = AtomicBool::new(false);

/// Blocks below this address belong to abandoned arenas (or to static data).
static FLOOR: AtomicUsize = AtomicUsize::new(0);

/// Small blocks: up to [`CLASSES`] sizes, [`CLASS_STEP`] bytes apart, aligned as dlmalloc
/// aligns every block.
const CLASS_STEP: usize = 16;
const CLASSES: usize = 32;
const SMALL_ALIGN: usize = 2 * size_of::<usize>();

/// The global allocator of a Fluent Bit filter module.
pub struct Arena {
    dlmalloc: UnsafeCell<Dlmalloc>,
    /// The first free block of each class; a free block's first word is the next one's
    /// address (null at the end).
    free: UnsafeCell<[*mut u8; CLASSES]>,
}

// SAFETY: a WebAssembly module runs one call at a time on one thread.
unsafe impl Sync for Arena {}

impl Arena {
    /// An arena; the first one grows from the module's memory like any allocator.
    pub const fn new() -> Self {
        Arena {
            dlmalloc: UnsafeCell::new(Dlmalloc::new()),
            free: UnsafeCell::new([std::ptr::null_mut(); CLASSES]),
        }
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
        // SAFETY: one call at a time; the old arena is forgotten, not freed, and so are
        // its free blocks.
        unsafe {
            std::ptr::write(self.dlmalloc.get(), Dlmalloc::new());
            *self.free.get() = [std::ptr::null_mut(); CLASSES];
        }
        IN_ALLOCATOR.store(false, Ordering::Relaxed);
    }

    fn current(&self) -> *mut Dlmalloc {
        self.dlmalloc.get()
    }

    /// The list of free blocks of `class`.
    ///
    /// # Safety
    /// One call at a time, and no other reference to the lists alive.
    #[allow(clippy::mut_from_ref)]
    unsafe fn list(&self, class: usize) -> &mut *mut u8 {
        unsafe { &mut (*self.free.get())[class] }
    }

    /// A small block of `class`: a free one, else a new one from dlmalloc.
    ///
    /// # Safety
    /// As [`GlobalAlloc::alloc`].
    unsafe fn alloc_small(&self, class: usize) -> *mut u8 {
        // Taking a block off a list is one store, after which the block is ours: a trap
        // can interrupt it nowhere that matters.
        let head = unsafe { self.list(class) };
        if head.is_null() {
            let size = (class + 1) * CLASS_STEP;
            return guarded(|| unsafe { (*self.current()).malloc(size, SMALL_ALIGN) });
        }
        let block = *head;
        *head = unsafe { block.cast::<*mut u8>().read() };
        block
    }

    /// Puts a small block of `class` on its list.
    ///
    /// # Safety
    /// As [`GlobalAlloc::dealloc`], for a block of the current arena.
    unsafe fn free_small(&self, block: *mut u8, class: usize) {
        let head = unsafe { self.list(class) };
        unsafe { block.cast::<*mut u8>().write(*head) };
        *head = block;
    }
}

/// The class of a block of `layout`, if it is small.
fn class(layout: Layout) -> Option<usize> {
    let class = layout.size().max(1).div_ceil(CLASS_STEP) - 1;
    (class < CLASSES && layout.align() <= SMALL_ALIGN).then_some(class)
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
// handed to the current one; a small block is taken and given back whole, in its class.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class(layout) {
            Some(class) => unsafe { self.alloc_small(class) },
            None => guarded(|| unsafe { (*self.current()).malloc(layout.size(), layout.align()) }),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class(layout).is_none() {
            return guarded(|| unsafe { (*self.current()).calloc(layout.size(), layout.align()) });
        }
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            unsafe { block.write_bytes(0, layout.size()) };
        }
        block
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if abandoned(ptr) {
            return;
        }
        match class(layout) {
            Some(class) => unsafe { self.free_small(ptr, class) },
            None => {
                guarded(|| unsafe { (*self.current()).free(ptr, layout.size(), layout.align()) })
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's promise: the new size, at the old alignment, is a layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let small = (class(layout), class(new_layout));
        if !abandoned(ptr) {
            match small {
                (Some(old), Some(new)) if old == new => return ptr,
                (None, None) => {
                    return guarded(|| unsafe {
                        (*self.current()).realloc(ptr, layout.size(), layout.align(), new_size)
                    });
                }
                _ => {}
            }
        }
        // Into another class, or out of an abandoned arena (where the block stays).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}
