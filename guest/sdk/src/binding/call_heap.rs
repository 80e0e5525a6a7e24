//! The heap of a component: small blocks are bumped out of whole pages, larger ones come
//! from the allocator behind it (dlmalloc).
//!
//! Nearly every block a component allocates lives for one exported call: the records'
//! text, their parsed index, the state read and written, the alerts, until the host's
//! post-return frees what the call answered. dlmalloc spent about 480 instructions
//! (compiled from WebAssembly) on each block's `malloc` and `free`, a tenth of a session
//! start. Here a block is a bump of a pointer, and a page counts the blocks alive in it:
//! when the count falls to zero the page is empty and used again.
//!
//! What that costs is memory within a call: a page is reused only once all its blocks
//! are freed, so a call holds about all the small blocks it allocated, not only those
//! alive (a batch of 64 session starts, about 2 MiB). A block that outlives its call (the
//! instance's configuration) holds its page, and no more; a rule that kept many small
//! blocks across calls would hold a page for each, which is why pipeline modules, whose
//! state lives in their memory, keep dlmalloc.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr::{self, null_mut};

/// A WebAssembly page; pages are aligned to their size, so a block finds its page by
/// masking its address.
pub(crate) const PAGE: usize = 65536;
/// Larger blocks, and blocks aligned more strictly, go to the allocator behind.
const SMALL: usize = 4096;
const MAX_ALIGN: usize = 16;
/// A page's header: its count of live blocks, and the next page of the free list.
const HEADER: usize = 16;

#[repr(C)]
struct Header {
    live: usize,
    next_free: *mut Header,
}

/// Where empty pages come from: one new page-aligned page, or null.
pub(crate) trait PageSource {
    fn grow(&self) -> *mut u8;
}

/// The module's linear memory, a page at a time.
#[cfg(target_family = "wasm")]
pub(crate) struct LinearMemory;

#[cfg(target_family = "wasm")]
impl PageSource for LinearMemory {
    fn grow(&self) -> *mut u8 {
        match core::arch::wasm32::memory_grow(0, 1) {
            usize::MAX => null_mut(),
            page => (page * PAGE) as *mut u8,
        }
    }
}

/// Bump allocation over counted pages, in front of `Large`.
pub(crate) struct CallHeap<S, Large> {
    source: S,
    large: Large,
    pages: UnsafeCell<Pages>,
}

struct Pages {
    /// The page blocks are bumped out of, or null before the first.
    current: *mut Header,
    /// The next block's address in `current`.
    top: usize,
    /// Empty pages, linked through their headers.
    free: *mut Header,
}

// SAFETY: a WebAssembly module runs one call at a time on one thread, and an allocator
// is never re-entered.
unsafe impl<S, L> Sync for CallHeap<S, L> {}

impl<S, L> CallHeap<S, L> {
    pub(crate) const fn new(source: S, large: L) -> Self {
        CallHeap {
            source,
            large,
            pages: UnsafeCell::new(Pages {
                current: null_mut(),
                top: 0,
                free: null_mut(),
            }),
        }
    }
}

fn is_small(layout: Layout) -> bool {
    layout.size() <= SMALL && layout.align() <= MAX_ALIGN
}

fn page_of(block: *mut u8) -> *mut Header {
    (block as usize & !(PAGE - 1)) as *mut Header
}

impl<S: PageSource, L> CallHeap<S, L> {
    /// A small block: bumped out of the current page, or out of the next one.
    ///
    /// # Safety
    /// One call at a time.
    unsafe fn bump(&self, layout: Layout) -> *mut u8 {
        // SAFETY: one call at a time (the caller's promise).
        let pages = unsafe { &mut *self.pages.get() };
        // A block of size 0 still takes a byte, so that no block starts at a page's end.
        let size = layout.size().max(1);
        if !pages.current.is_null() {
            let start = pages.top.next_multiple_of(layout.align());
            if start + size <= pages.current as usize + PAGE {
                return unsafe { pages.take(start, size) };
            }
            // Full: the page is freed once its last block is.
        }
        let page = match pages.free.is_null() {
            false => unsafe { pages.pop_free() },
            true => self.source.grow() as *mut Header,
        };
        if page.is_null() {
            return null_mut();
        }
        unsafe {
            page.write(Header {
                live: 0,
                next_free: null_mut(),
            })
        };
        pages.current = page;
        let start = (page as usize + HEADER).next_multiple_of(layout.align());
        unsafe { pages.take(start, size) }
    }
}

impl Pages {
    /// Takes `size` bytes at `start`, inside the current page.
    unsafe fn take(&mut self, start: usize, size: usize) -> *mut u8 {
        self.top = start + size;
        unsafe { (*self.current).live += 1 };
        start as *mut u8
    }

    unsafe fn pop_free(&mut self) -> *mut Header {
        let page = self.free;
        self.free = unsafe { (*page).next_free };
        page
    }

    /// Frees a small block: its page is empty when its last block is freed.
    unsafe fn release(&mut self, block: *mut u8) {
        let page = page_of(block);
        let live = unsafe { &mut (*page).live };
        *live -= 1;
        if *live > 0 {
            return;
        }
        if page == self.current {
            self.top = page as usize + HEADER;
        } else {
            unsafe { (*page).next_free = self.free };
            self.free = page;
        }
    }

    /// Whether the block at `block`, of `old` bytes, is the current page's last and can
    /// grow in place to `new` bytes.
    fn grows_in_place(&self, block: *mut u8, old: usize, new: usize) -> bool {
        let at = block as usize;
        page_of(block) == self.current
            && at + old.max(1) == self.top
            && at + new <= self.current as usize + PAGE
    }
}

// SAFETY: small blocks never overlap (each is bumped past the last, in a page whose blocks
// are all free before it is reused); large ones are `L`'s.
unsafe impl<S: PageSource, L: GlobalAlloc> GlobalAlloc for CallHeap<S, L> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match is_small(layout) {
            true => unsafe { self.bump(layout) },
            false => unsafe { self.large.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match is_small(layout) {
            true => unsafe { (*self.pages.get()).release(block) },
            false => unsafe { self.large.dealloc(block, layout) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's layout is valid, and the new size keeps it so.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_small(layout), is_small(new)) {
            (false, false) => return unsafe { self.large.realloc(block, layout, new_size) },
            // A small block shrinks where it is: freeing it does not need its size.
            (true, true) if new_size <= layout.size() => return block,
            (true, true) => {
                let pages = unsafe { &mut *self.pages.get() };
                if pages.grows_in_place(block, layout.size(), new_size) {
                    pages.top = block as usize + new_size;
                    return block;
                }
            }
            _ => {}
        }
        let moved = unsafe { self.alloc(new) };
        if !moved.is_null() {
            unsafe { ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size)) };
            unsafe { self.dealloc(block, layout) };
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;
    use std::cell::Cell;

    /// Page-aligned pages from the system allocator, leaked, and counted.
    #[derive(Default)]
    struct Leaked {
        grown: Cell<usize>,
        limit: usize,
    }

    impl PageSource for Leaked {
        fn grow(&self) -> *mut u8 {
            if self.grown.get() == self.limit {
                return null_mut();
            }
            self.grown.set(self.grown.get() + 1);
            unsafe { System.alloc(Layout::from_size_align(PAGE, PAGE).unwrap()) }
        }
    }

    fn heap(limit: usize) -> CallHeap<Leaked, System> {
        CallHeap::new(
            Leaked {
                grown: Cell::new(0),
                limit,
            },
            System,
        )
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn a_call_whose_blocks_are_all_freed_leaves_its_page_to_the_next() {
        let heap = heap(8);
        for _ in 0..1000 {
            let blocks: Vec<_> = (1..40)
                .map(|n| unsafe { heap.alloc(layout(n * 10, 8)) })
                .collect();
            for (n, b) in blocks.into_iter().enumerate() {
                unsafe { heap.dealloc(b, layout((n + 1) * 10, 8)) };
            }
        }
        assert_eq!(heap.source.grown.get(), 1);
    }

    #[test]
    fn a_block_that_outlives_its_call_holds_its_page_and_no_other() {
        let heap = heap(8);
        let kept = unsafe { heap.alloc(layout(100, 8)) };
        unsafe { kept.write_bytes(7, 100) };
        for _ in 0..1000 {
            let call: Vec<_> = (0..20)
                .map(|_| unsafe { heap.alloc(layout(2000, 8)) })
                .collect();
            for b in call {
                unsafe { b.write_bytes(1, 2000) };
                unsafe { heap.dealloc(b, layout(2000, 8)) };
            }
        }
        assert!(heap.source.grown.get() <= 2, "{}", heap.source.grown.get());
        assert!((0..100).all(|i| unsafe { *kept.add(i) } == 7));
    }

    #[test]
    fn large_or_strictly_aligned_blocks_go_behind_and_come_back() {
        let heap = heap(0);
        for l in [layout(SMALL + 1, 8), layout(64, 64)] {
            let b = unsafe { heap.alloc(l) };
            assert!(!b.is_null());
            let b = unsafe { heap.realloc(b, l, l.size() * 2) };
            assert!(!b.is_null());
            unsafe { heap.dealloc(b, layout(l.size() * 2, l.align())) };
        }
        assert_eq!(heap.source.grown.get(), 0);
        assert!(
            unsafe { heap.alloc(layout(8, 8)) }.is_null(),
            "no page to be had"
        );
    }

    #[test]
    fn the_last_block_grows_in_place_and_others_move_with_their_bytes() {
        let heap = heap(8);
        let a = unsafe { heap.alloc(layout(16, 1)) };
        let grown = unsafe { heap.realloc(a, layout(16, 1), 1000) };
        assert_eq!(grown, a);
        let b = unsafe { heap.alloc(layout(8, 8)) };
        unsafe { grown.write_bytes(3, 1000) };
        let moved = unsafe { heap.realloc(grown, layout(1000, 1), 3000) };
        assert_ne!(moved, grown);
        assert!((0..1000).all(|i| unsafe { *moved.add(i) } == 3));
        let large = unsafe { heap.realloc(moved, layout(3000, 1), SMALL * 2) };
        assert!((0..1000).all(|i| unsafe { *large.add(i) } == 3));
        let small = unsafe { heap.realloc(large, layout(SMALL * 2, 1), 10) };
        assert!((0..10).all(|i| unsafe { *small.add(i) } == 3));
        for (block, l) in [(b, layout(8, 8)), (small, layout(10, 1))] {
            unsafe { heap.dealloc(block, l) };
        }
        let page = page_of(a);
        assert_eq!(unsafe { (*page).live }, 0);
    }

    /// Random calls of random blocks, some kept across calls: no two live blocks overlap,
    /// each keeps its bytes, and the pages in use stay bounded by what is alive.
    #[test]
    fn live_blocks_never_overlap_and_keep_their_bytes() {
        let heap = heap(64);
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut kept: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let mut most_kept = 0;
        for call in 0..2000 {
            let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
            for i in 0..next(60) {
                let l = layout(next(SMALL * 5 / 4) + 1, 1 << next(6));
                let mut b = unsafe { heap.alloc(l) };
                let mut l = l;
                if next(4) == 0 {
                    let size = next(SMALL * 5 / 4) + 1;
                    b = unsafe { heap.realloc(b, l, size) };
                    l = layout(size, l.align());
                }
                assert!(!b.is_null());
                assert_eq!(b as usize % l.align(), 0);
                let mark = (call + i) as u8;
                unsafe { b.write_bytes(mark, l.size()) };
                live.push((b, l, mark));
            }
            if next(50) == 0 {
                kept.extend(live.pop());
                most_kept = most_kept.max(kept.len());
            }
            if next(50) == 0 && !kept.is_empty() {
                let (b, l, _) = kept.swap_remove(next(kept.len()));
                unsafe { heap.dealloc(b, l) };
            }
            let mut all: Vec<_> = live.iter().chain(&kept).collect();
            all.sort_by_key(|(b, ..)| *b as usize);
            for pair in all.windows(2) {
                assert!(pair[0].0 as usize + pair[0].1.size() <= pair[1].0 as usize);
            }
            for (b, l, mark) in &all {
                assert!((0..l.size()).all(|i| unsafe { *b.add(i) } == *mark));
            }
            for (b, l, _) in live {
                unsafe { heap.dealloc(b, l) };
            }
        }
        // A call's blocks fill at most six pages; each kept block holds at most one more.
        assert!(heap.source.grown.get() <= most_kept + 6);
    }
}
