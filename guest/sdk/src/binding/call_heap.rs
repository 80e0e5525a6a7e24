//! The heap of a component: small blocks are bumped out of whole pages, larger ones come
//! from the allocator behind it (dlmalloc), and so do the pages.
//!
//! Nearly every block a component allocates lives for one exported call: the records'
//! text, their parsed index, the state read and written, the alerts, until the host's
//! post-return frees what the call answered. dlmalloc spent about 480 instructions
//! (compiled from WebAssembly) on each block's `malloc` and `free`, a tenth of a session
//! start. Here a block is a bump of a pointer, and a page counts the blocks alive in it:
//! when the count falls to zero the page is empty, and is used again if it is the one
//! blocks are bumped out of, or else given back. Memory thus moves freely between small
//! blocks and large ones, under the host's limit on the instance's memory.
//!
//! What that costs is memory within a call: a page is given back only once all its blocks
//! are freed, so a call holds about all the small blocks it allocated, not only those
//! alive (a batch of 64 session starts, 2 to 3 MiB). A block that outlives its call (the
//! instance's configuration) holds its page, and no more; a rule that kept many small
//! blocks across calls would hold a page for each, which is why pipeline modules, whose
//! state lives in their memory, keep dlmalloc.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr::{self, null_mut};

/// A page of small blocks, aligned to its size, so that a block finds its page by masking
/// its address.
const PAGE: usize = 65536;
/// Larger blocks, and blocks aligned more strictly, go to the allocator behind.
const SMALL: usize = 4096;
const MAX_ALIGN: usize = 16;
/// A page's header: its count of live blocks.
const HEADER: usize = 16;

/// Bump allocation over counted pages, in front of `Large`, which also gives the pages.
pub(crate) struct CallHeap<Large> {
    large: Large,
    pages: UnsafeCell<Pages>,
}

struct Pages {
    /// The page blocks are bumped out of, or null before the first.
    current: *mut usize,
    /// Where the next block may start, as an offset into `current`.
    top: usize,
}

// SAFETY: a WebAssembly module without threads runs one call at a time on one thread, and
// an allocator is never re-entered.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl<L> Sync for CallHeap<L> {}

impl<L> CallHeap<L> {
    pub(crate) const fn new(large: L) -> Self {
        CallHeap {
            large,
            pages: UnsafeCell::new(Pages {
                current: null_mut(),
                top: 0,
            }),
        }
    }
}

fn is_small(layout: Layout) -> bool {
    layout.size() <= SMALL && layout.align() <= MAX_ALIGN
}

/// The header of the page `block` is in.
fn page_of(block: *mut u8) -> *mut usize {
    (block as usize & !(PAGE - 1)) as *mut usize
}

const PAGE_LAYOUT: Layout = match Layout::from_size_align(PAGE, PAGE) {
    Ok(layout) => layout,
    Err(_) => panic!("a page is a valid layout"),
};

impl<L: GlobalAlloc> CallHeap<L> {
    /// A small block: bumped out of the current page, or out of a new one.
    ///
    /// # Safety
    /// One call at a time.
    unsafe fn bump(&self, layout: Layout) -> *mut u8 {
        // SAFETY: one call at a time (the caller's promise).
        let pages = unsafe { &mut *self.pages.get() };
        // A block of size 0 still takes a byte, so that no block starts at a page's end.
        let size = layout.size().max(1);
        // Pages are aligned to more than any small block, so offsets align as addresses do.
        let start = pages.top.next_multiple_of(layout.align());
        if !pages.current.is_null() && start + size <= PAGE {
            return unsafe { pages.take(start, size) };
        }
        // The page in use, if any, is full; it goes back once its last block is freed.
        let page = unsafe { self.large.alloc(PAGE_LAYOUT) } as *mut usize;
        if page.is_null() {
            return null_mut();
        }
        unsafe { page.write(0) };
        pages.current = page;
        unsafe { pages.take(HEADER.next_multiple_of(layout.align()), size) }
    }

    /// Frees a small block; its page is empty once its last block is.
    unsafe fn release(&self, block: *mut u8) {
        // SAFETY: one call at a time.
        let pages = unsafe { &mut *self.pages.get() };
        let page = page_of(block);
        let live = unsafe { &mut *page };
        *live -= 1;
        match (*live, page == pages.current) {
            (0, true) => pages.top = HEADER,
            (0, false) => unsafe { self.large.dealloc(page as *mut u8, PAGE_LAYOUT) },
            _ => {}
        }
    }
}

impl Pages {
    /// Takes `size` bytes at offset `start` of the current page.
    unsafe fn take(&mut self, start: usize, size: usize) -> *mut u8 {
        self.top = start + size;
        unsafe { *self.current += 1 };
        self.current.cast::<u8>().wrapping_add(start)
    }

    /// Resizes in place the block at `block`, of `old` bytes, to `new` bytes, if it is
    /// the last one of the current page and the page has the room.
    fn resized_in_place(&mut self, block: *mut u8, old: usize, new: usize) -> bool {
        let offset = block as usize - page_of(block) as usize;
        let fits = page_of(block) == self.current
            && offset + old.max(1) == self.top
            && offset + new <= PAGE;
        if fits {
            self.top = offset + new;
        }
        fits
    }
}

// SAFETY: small blocks never overlap (each is bumped past the last, in a page whose blocks
// are all free before it is reused), and lie inside their page; large ones are `L`'s.
unsafe impl<L: GlobalAlloc> GlobalAlloc for CallHeap<L> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match is_small(layout) {
            true => unsafe { self.bump(layout) },
            false => unsafe { self.large.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_small(layout) {
            return unsafe { self.large.alloc_zeroed(layout) };
        }
        let block = unsafe { self.bump(layout) };
        if !block.is_null() {
            unsafe { block.write_bytes(0, layout.size()) };
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match is_small(layout) {
            true => unsafe { self.release(block) },
            false => unsafe { self.large.dealloc(block, layout) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's layout is valid, and the new size keeps it so.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_small(layout), is_small(new)) {
            (false, false) => return unsafe { self.large.realloc(block, layout, new_size) },
            (true, true) => {
                let pages = unsafe { &mut *self.pages.get() };
                // A block that is not the page's last shrinks where it is: freeing it does
                // not need its size.
                if pages.resized_in_place(block, layout.size(), new_size)
                    || new_size <= layout.size()
                {
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
    use std::collections::BTreeMap;

    /// What a new page is filled with.
    const UNTOUCHED: u8 = 0xaa;

    /// The system's allocator, counting the pages it holds, and refusing them past a limit.
    struct Behind {
        pages: Cell<usize>,
        pages_ever: Cell<usize>,
        page_limit: usize,
    }

    unsafe impl GlobalAlloc for Behind {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout == PAGE_LAYOUT {
                if self.pages.get() == self.page_limit {
                    return null_mut();
                }
                self.pages.set(self.pages.get() + 1);
                self.pages_ever.set(self.pages_ever.get() + 1);
                let page = unsafe { System.alloc(layout) };
                unsafe { page.write_bytes(UNTOUCHED, PAGE) };
                return page;
            }
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
            if layout == PAGE_LAYOUT {
                self.pages.set(self.pages.get() - 1);
            }
            unsafe { System.dealloc(block, layout) }
        }
    }

    fn heap(page_limit: usize) -> CallHeap<Behind> {
        CallHeap::new(Behind {
            pages: Cell::new(0),
            pages_ever: Cell::new(0),
            page_limit,
        })
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
        assert_eq!(heap.large.pages_ever.get(), 1);
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
        assert_eq!(heap.large.pages_ever.get(), 2);
        assert!((0..100).all(|i| unsafe { *kept.add(i) } == 7));
        unsafe { heap.dealloc(kept, layout(100, 8)) };
        assert_eq!(heap.large.pages.get(), 1, "the kept block's page went back");
    }

    #[test]
    fn large_or_strictly_aligned_blocks_go_behind_and_come_back() {
        let heap = heap(0);
        for l in [layout(SMALL + 1, 8), layout(64, 64)] {
            let b = unsafe { heap.alloc_zeroed(l) };
            assert!(!b.is_null());
            let b = unsafe { heap.realloc(b, l, l.size() * 2) };
            assert!(!b.is_null());
            unsafe { heap.dealloc(b, layout(l.size() * 2, l.align())) };
        }
        assert!(
            unsafe { heap.alloc(layout(8, 8)) }.is_null(),
            "no page to be had"
        );
    }

    #[test]
    fn the_last_block_resizes_in_place_and_others_move_with_their_bytes() {
        let heap = heap(8);
        let a = unsafe { heap.alloc(layout(16, 1)) };
        assert_eq!(unsafe { heap.realloc(a, layout(16, 1), 1000) }, a);
        assert_eq!(unsafe { heap.realloc(a, layout(1000, 1), 10) }, a);
        let b = unsafe { heap.alloc(layout(8, 8)) };
        assert_eq!(
            b as usize,
            (a as usize + 10).next_multiple_of(8),
            "shrunk in place"
        );
        let grown = unsafe { heap.realloc(a, layout(10, 1), 1000) };
        assert_ne!(grown, a);
        unsafe { grown.write_bytes(3, 1000) };
        let large = unsafe { heap.realloc(grown, layout(1000, 1), SMALL * 2) };
        assert!((0..1000).all(|i| unsafe { *large.add(i) } == 3));
        let small = unsafe { heap.realloc(large, layout(SMALL * 2, 1), 10) };
        assert!((0..10).all(|i| unsafe { *small.add(i) } == 3));
        let after = unsafe { small.add(10) };
        let untouched = (page_of(a) as usize + PAGE) - after as usize;
        assert!((0..untouched).all(|i| unsafe { *after.add(i) } == UNTOUCHED));
        for (block, l) in [(b, layout(8, 8)), (small, layout(10, 1))] {
            unsafe { heap.dealloc(block, l) };
        }
        assert_eq!(unsafe { *page_of(a) }, 0);
    }

    /// A live block: where, its layout, the byte it is filled with.
    type Block = (*mut u8, Layout, u8);

    /// Checks what must hold of the live blocks: each keeps its bytes; small ones lie in
    /// their page, past its header, apart from each other, and each page counts its own.
    fn check(blocks: &[&Block]) {
        let mut in_page: BTreeMap<usize, usize> = BTreeMap::new();
        let mut small: Vec<_> = blocks.iter().filter(|(_, l, _)| is_small(*l)).collect();
        small.sort_by_key(|(b, ..)| *b as usize);
        for (b, l, _) in &small {
            let page = page_of(*b) as usize;
            assert!(*b as usize >= page + HEADER);
            assert_eq!(page_of(b.wrapping_add(l.size() - 1)) as usize, page);
            *in_page.entry(page).or_default() += 1;
        }
        for pair in small.windows(2) {
            assert!(pair[0].0 as usize + pair[0].1.size() <= pair[1].0 as usize);
        }
        for (page, count) in in_page {
            assert_eq!(unsafe { *(page as *const usize) }, count);
        }
        for (b, l, mark) in blocks {
            assert!((0..l.size()).all(|i| unsafe { *b.add(i) } == *mark));
        }
    }

    /// Random calls of random blocks, resized at random, some kept across calls.
    #[test]
    fn live_blocks_keep_their_bytes_and_pages_go_back() {
        let heap = heap(64);
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut kept: Vec<Block> = Vec::new();
        for call in 0..2000 {
            let mut live: Vec<Block> = Vec::new();
            for i in 0..next(60) {
                if !live.is_empty() && next(3) == 0 {
                    let (b, l, mark) = live.swap_remove(next(live.len()));
                    let size = next(SMALL * 5 / 4) + 1;
                    let moved = unsafe { heap.realloc(b, l, size) };
                    assert!(!moved.is_null());
                    let kept_bytes = size.min(l.size());
                    assert!((0..kept_bytes).all(|i| unsafe { *moved.add(i) } == mark));
                    unsafe { moved.write_bytes(mark, size) };
                    live.push((moved, layout(size, l.align()), mark));
                    continue;
                }
                let l = layout(next(SMALL * 5 / 4) + 1, 1 << next(6));
                let b = unsafe { heap.alloc(l) };
                assert!(!b.is_null());
                assert_eq!(b as usize % l.align(), 0);
                let mark = (call + i) as u8;
                unsafe { b.write_bytes(mark, l.size()) };
                live.push((b, l, mark));
            }
            if next(50) == 0 {
                kept.extend(live.pop());
            }
            if next(50) == 0 && !kept.is_empty() {
                let (b, l, _) = kept.swap_remove(next(kept.len()));
                unsafe { heap.dealloc(b, l) };
            }
            check(&live.iter().chain(&kept).collect::<Vec<_>>());
            for (b, l, _) in live {
                unsafe { heap.dealloc(b, l) };
            }
            // Left: the pages of the kept blocks, and the one in use.
            let kept_pages: std::collections::BTreeSet<_> = (kept.iter())
                .filter(|(_, l, _)| is_small(*l))
                .map(|(b, ..)| page_of(*b))
                .collect();
            assert!(heap.large.pages.get() <= kept_pages.len() + 1);
        }
    }
}
