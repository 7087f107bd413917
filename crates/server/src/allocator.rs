//! The server gives memory back to the system after a large request.
//!
//! glibc's malloc raises its mmap threshold each time a large block is freed (up to 32 MiB),
//! so after one large request the next large buffers come from the heap arenas instead of
//! their own mappings, and an arena keeps the pages it has touched. Measured on a 5 000 000 row
//! (228 MB CSV) request: 187 MB stayed resident afterwards on an idle server that started at
//! 45 MB. Fixing the thresholds turns the adaptive behaviour off: blocks of 128 KiB and more
//! are mapped and unmapped on their own, and free heap tops over 32 MiB are trimmed. Set
//! before the plugins are loaded, the server then starts at 14 MB, the same request peaks at
//! 297 MB instead of 363 MB, and 26–33 MB stay resident afterwards.
//!
//! Millions of small blocks (one request's per-group results) are freed into the middle of
//! the arenas, which only shrink from the top: 500 MB stayed resident after a refused
//! 1 000 000-group request. After a large request the server therefore asks the allocator,
//! a moment later, to return every free page ([`Trimmer`]): 18 MB then stay. Closed
//! connections do the same: after 1 000 clients had come and gone, 62 MB stayed resident
//! on a server that started at 33 MB before it trimmed after them.
//!
//! This is process-wide and covers plugins too: they allocate through the same C library.
//!
//! Large buffers get their own mappings ([`HugePages`], the binary's global allocator).
//! A fresh block is faulted in a 4 KiB page at a time, and on a virtual machine the faults
//! (the kernel's entry, cgroup and LRU bookkeeping, zeroing memory the host backs lazily)
//! cost more than the copies that touch the memory: profiling a 290 MB Arrow upload put
//! half the server's time under page faults, and the zeroing of fresh pages alone took
//! nine-tenths of joining its chunks. So the server ([`HugePages::map_large_blocks`]) maps
//! blocks of 1 MiB and more on their own, those of 4 MiB and more in whole 2 MiB
//! transparent huge pages (one fault instead of 512), and retains freed blocks, up to the
//! input memory budget, for the next request to reuse already backed; the [`Trimmer`]'s
//! tick returns them once none was used for a tick. The same upload went from 0.93–1.05 s
//! to 0.58–0.72 s per call, and its page faults from 9 500 to 1 500 per call. Where the
//! kernel has transparent huge pages off (`never`), the advice is ignored and only the
//! reuse remains. Other commands leave every block to the system allocator: the CLI uses a
//! block once, and a huge page is zeroed whole when first touched (the CLI summarizing a
//! 10M-row log took 4.5–5.6 s with huge pages instead of 3.7–4.1 s).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The system allocator for small blocks; blocks of [`HugePages::MIN_BYTES`] and more are
/// mapped on their own, in whole 2 MiB huge pages, aligned to them and advised to be backed
/// by transparent huge pages (see the module docs). Set it as the binary's
/// `#[global_allocator]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePages;

/// Large blocks freed and kept mapped for the next request to reuse: their pages are
/// already backed, so reusing one costs no page faults. At most [`RETAINED_AT_MOST`] bytes
/// in [`Retained::SLOTS`] blocks; none until [`HugePages::retain_at_most`] is called.
/// A fixed array, because the allocator cannot allocate for its own bookkeeping.
struct Retained {
    blocks: [(usize, usize); Retained::SLOTS],
    count: usize,
    bytes: usize,
}

impl Retained {
    const SLOTS: usize = 256;

    /// Takes the smallest block of at least `length` bytes and at most twice that (a larger
    /// one would hold pages the request does not need): (address, its length).
    fn take(&mut self, length: usize) -> Option<(usize, usize)> {
        let index = (0..self.count)
            .filter(|&i| {
                let kept = self.blocks[i].1;
                kept >= length && kept / 2 <= length
            })
            .min_by_key(|&i| self.blocks[i].1)?;
        let block = self.blocks[index];
        self.count -= 1;
        self.blocks[index] = self.blocks[self.count];
        self.bytes -= block.1;
        Some(block)
    }

    /// Keeps a block if it fits within `limit` bytes and a free slot.
    fn keep(&mut self, address: usize, length: usize, limit: usize) -> bool {
        if self.count == Self::SLOTS || self.bytes.saturating_add(length) > limit {
            return false;
        }
        self.blocks[self.count] = (address, length);
        self.count += 1;
        self.bytes += length;
        true
    }
}

static RETAINED: Mutex<Retained> = Mutex::new(Retained {
    blocks: [(0, 0); Retained::SLOTS],
    count: 0,
    bytes: 0,
});
/// How large blocks are allocated: not yet decided, by the system allocator (the CLI, which
/// uses each block once and gains nothing from mapping them itself), or mapped here.
static MODE: AtomicU8 = AtomicU8::new(MODE_UNDECIDED);
const MODE_UNDECIDED: u8 = 0;
const MODE_SYSTEM: u8 = 1;
const MODE_MAPPED: u8 = 2;
/// The most freed bytes [`RETAINED`] may keep (0: return every block at once).
static RETAINED_AT_MOST: AtomicUsize = AtomicUsize::new(0);
/// Set when a retained block is kept or reused; cleared by [`HugePages::release_if_idle`].
static RETAINED_IN_USE: AtomicBool = AtomicBool::new(false);

fn retained() -> std::sync::MutexGuard<'static, Retained> {
    RETAINED.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HugePages {
    /// Blocks at least this large are mapped on their own (glibc maps them on their own
    /// too, from 128 KiB), so that they can be retained and reused.
    pub const MIN_BYTES: usize = 1 << 20;
    /// Blocks at least this large are mapped in whole huge pages: rounded up to 2 MiB, a
    /// block takes under half its size more than it asked for.
    pub const MIN_HUGE_BYTES: usize = 4 << 20;
    const HUGE_PAGE: usize = 2 << 20;
    const PAGE: usize = 4096;

    /// Keeps up to `bytes` of freed large blocks mapped, for later requests to reuse, until
    /// a [`Self::release_if_idle`] finds them unused since its previous call. The server
    /// sets its input memory budget: what stays is never more than requests held at once.
    pub fn retain_at_most(bytes: usize) {
        RETAINED_AT_MOST.store(bytes, Ordering::Relaxed);
    }

    /// Returns the retained blocks to the system if none was kept or reused since the
    /// previous call; call it every few seconds (off the async runtime: unmapping hundreds
    /// of megabytes takes milliseconds).
    pub fn release_if_idle() {
        if RETAINED_IN_USE.swap(false, Ordering::Relaxed) {
            return;
        }
        let (blocks, count) = {
            let mut retained = retained();
            let taken = (retained.blocks, retained.count);
            retained.count = 0;
            retained.bytes = 0;
            taken
        };
        for &(address, length) in &blocks[..count] {
            Self::unmap_length(address as *mut u8, length);
        }
    }

    /// Bytes retained now.
    pub fn retained_bytes() -> usize {
        retained().bytes
    }

    /// A block of `length` bytes ([`Self::length`]) and whether it is a reused one (which
    /// holds what its last user wrote): a retained one if one fits (a longer one has its
    /// tail unmapped), else a new mapping, null when the system refuses. A block of whole
    /// huge pages starts on a 2 MiB boundary either way: blocks shorter than
    /// [`Self::MIN_HUGE_BYTES`] never hold a request that long.
    fn obtain(length: usize) -> (*mut u8, bool) {
        if RETAINED_AT_MOST.load(Ordering::Relaxed) > 0 {
            let reused = retained().take(length);
            if let Some((address, kept)) = reused {
                RETAINED_IN_USE.store(true, Ordering::Relaxed);
                if kept > length {
                    Self::unmap_length((address + length) as *mut u8, kept - length);
                }
                return (address as *mut u8, true);
            }
        }
        (Self::map(length), false)
    }

    /// Retains a freed block of `length` bytes, or unmaps it.
    fn give_back(ptr: *mut u8, length: usize) {
        let limit = RETAINED_AT_MOST.load(Ordering::Relaxed);
        if limit > 0 && retained().keep(ptr as usize, length, limit) {
            RETAINED_IN_USE.store(true, Ordering::Relaxed);
            return;
        }
        Self::unmap_length(ptr, length);
    }

    /// Whether a block of `layout` is (or was) mapped by [`Self::map`].
    fn mapped(size: usize, align: usize) -> bool {
        cfg!(target_os = "linux")
            && size >= Self::MIN_BYTES
            && align
                <= if size >= Self::MIN_HUGE_BYTES {
                    Self::HUGE_PAGE
                } else {
                    Self::PAGE
                }
            && Self::mode() == MODE_MAPPED
    }

    /// The process's way with large blocks, fixed by the first one: mapped if
    /// [`Self::map_large_blocks`] came before it, the system allocator's otherwise.
    fn mode() -> u8 {
        let decided = MODE.load(Ordering::Relaxed);
        if decided != MODE_UNDECIDED {
            return decided;
        }
        match MODE.compare_exchange(
            MODE_UNDECIDED,
            MODE_SYSTEM,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => MODE_SYSTEM,
            Err(decided) => decided,
        }
    }

    /// Maps large blocks on their own from now on (the server; see the module docs). Call it
    /// before the process allocates a block of [`Self::MIN_BYTES`] or more: the way is fixed
    /// by the first such block, so that every block is freed the way it was allocated.
    /// Returns whether large blocks are mapped.
    pub fn map_large_blocks() -> bool {
        match MODE.compare_exchange(
            MODE_UNDECIDED,
            MODE_MAPPED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => true,
            Err(decided) => decided == MODE_MAPPED,
        }
    }

    /// The mapping's length for a block of `size` bytes: whole huge pages from
    /// [`Self::MIN_HUGE_BYTES`], whole pages below.
    fn length(size: usize) -> usize {
        if size >= Self::MIN_HUGE_BYTES {
            size.next_multiple_of(Self::HUGE_PAGE)
        } else {
            size.next_multiple_of(Self::PAGE)
        }
    }

    /// Maps `length` bytes; from [`Self::MIN_HUGE_BYTES`] (whole huge pages) at a 2 MiB
    /// boundary, advised as huge pages.
    /// Null when the system refuses. Fresh anonymous memory reads as zeros.
    #[cfg(target_os = "linux")]
    fn map(length: usize) -> *mut u8 {
        use libc::{MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_READ, PROT_WRITE};
        // `length` is whole huge pages from MIN_HUGE_BYTES ([`Self::length`]).
        let huge = length >= Self::MIN_HUGE_BYTES;
        // One huge page more than needed, so that an aligned start lies inside; the ends
        // beyond it are unmapped at once.
        let Some(padded) = length.checked_add(if huge { Self::HUGE_PAGE } else { 0 }) else {
            return std::ptr::null_mut();
        };
        // SAFETY: a fresh private anonymous mapping, touching nothing else.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                padded,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == MAP_FAILED {
            return std::ptr::null_mut();
        }
        let base = base as usize;
        if !huge {
            return base as *mut u8;
        }
        let start = base.next_multiple_of(Self::HUGE_PAGE);
        let end = start + length;
        // SAFETY: both ranges lie inside the mapping just made and outside the block kept.
        // MADV_HUGEPAGE is advice: a refusal costs speed only.
        unsafe {
            if start > base {
                libc::munmap(base as *mut libc::c_void, start - base);
            }
            if base + padded > end {
                libc::munmap(end as *mut libc::c_void, base + padded - end);
            }
            libc::madvise(start as *mut libc::c_void, length, libc::MADV_HUGEPAGE);
        }
        start as *mut u8
    }

    #[cfg(not(target_os = "linux"))]
    fn map(_length: usize) -> *mut u8 {
        std::ptr::null_mut()
    }

    /// Unmaps `length` bytes at `ptr`, part or all of a block [`Self::map`] made.
    fn unmap_length(ptr: *mut u8, length: usize) {
        #[cfg(target_os = "linux")]
        // SAFETY: the range is a mapping `map` made (or its tail), no longer used.
        unsafe {
            libc::munmap(ptr.cast(), length);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (ptr, length);
    }
}

// SAFETY: small blocks are the system allocator's; large ones are whole private mappings,
// aligned to a page, or to 2 MiB from `MIN_HUGE_BYTES` (`mapped` leaves stricter alignments
// to the system allocator), zeroed when handed out zeroed, unmapped or retained exactly once
// on deallocation, and moved with their contents on reallocation.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::mapped(layout.size(), layout.align()) {
            return Self::obtain(Self::length(layout.size())).0;
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::mapped(layout.size(), layout.align()) {
            let (ptr, reused) = Self::obtain(Self::length(layout.size()));
            if reused {
                // A fresh mapping reads as zeros without being touched (clearing it would
                // fault in pages a sparse user never writes); a reused block is cleared, which
                // costs far less than the faults its reuse saves.
                // SAFETY: `ptr` is a block of at least `layout.size()` bytes just obtained.
                unsafe { std::ptr::write_bytes(ptr, 0, layout.size()) };
            }
            return ptr;
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::mapped(layout.size(), layout.align()) {
            Self::give_back(ptr, Self::length(layout.size()));
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        match (
            Self::mapped(layout.size(), align),
            Self::mapped(new_size, align),
        ) {
            // SAFETY: forwarded with the caller's guarantees.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            (true, true) if Self::length(layout.size()) == Self::length(new_size) => ptr,
            _ => {
                // SAFETY: `new_size` is non-zero and, rounded to `align`, fits (the caller's
                // guarantees); the old block is live for `layout.size()` bytes and the new
                // one for `new_size`, so copying the smaller is in bounds of both.
                unsafe {
                    let new_layout = Layout::from_size_align_unchecked(new_size, align);
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    moved
                }
            }
        }
    }
}

/// Sets the allocator's thresholds for a long-running server (see the module docs).
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// glibc's default, fixed rather than adaptive.
        const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
        const TRIM_THRESHOLD: libc::c_int = 32 * 1024 * 1024;
        // SAFETY: mallopt only sets allocator parameters; it is safe to call at any time.
        let set = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        };
        if !set {
            tracing::warn!("cannot set the allocator's thresholds; freed memory may stay resident");
        }
    }
}

/// Returns free heap pages to the system in the seconds after a large request ended, off the
/// async runtime, when [`Trimmer::after_release`] says some was freed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trimmer {
    /// Trims still to do, one per tick.
    pending: Arc<AtomicU32>,
}

impl Trimmer {
    const DELAY: Duration = Duration::from_secs(2);
    /// A response is freed only once it is sent, which a slow client can delay: the pages are
    /// returned at each of the next few ticks, not once.
    const TRIMS_PER_REQUEST: u32 = 3;

    /// Starts the background task on the current runtime.
    pub(crate) fn start() -> Trimmer {
        let trimmer = Trimmer::default();
        let pending = Arc::clone(&trimmer.pending);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Self::DELAY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let due = pending
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok();
                let retaining = HugePages::retained_bytes() > 0;
                if due || retaining {
                    // Walks every arena and unmaps blocks: milliseconds for hundreds of
                    // megabytes, not for the runtime's threads.
                    let _ = tokio::task::spawn_blocking(move || {
                        HugePages::release_if_idle();
                        if due {
                            trim();
                        }
                    })
                    .await;
                }
            }
        });
        trimmer
    }

    /// Asks for free pages to be returned at the next ticks: called after something released
    /// much memory (a large request, a closed connection). Cheap; trims happen at most once a
    /// tick, whatever the number of calls.
    pub(crate) fn after_release(&self) {
        self.pending
            .store(Self::TRIMS_PER_REQUEST, Ordering::Relaxed);
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests share the process-wide retained blocks: one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 64).expect("a valid layout")
    }

    #[test]
    fn retained_blocks_fit_their_request() {
        let mut retained = Retained {
            blocks: [(0, 0); Retained::SLOTS],
            count: 0,
            bytes: 0,
        };
        assert!(retained.keep(0x1000_0000, 8 << 20, 20 << 20));
        assert!(retained.keep(0x2000_0000, 4 << 20, 20 << 20));
        // Over the limit: refused, the caller unmaps it.
        assert!(!retained.keep(0x3000_0000, 16 << 20, 20 << 20));
        assert_eq!(retained.bytes, 12 << 20);
        // The smallest block that holds the request, never one over twice its size.
        assert_eq!(retained.take(1 << 20), None);
        assert_eq!(retained.take(3 << 20), Some((0x2000_0000, 4 << 20)));
        assert_eq!(retained.take(3 << 20), None);
        assert_eq!(retained.take(6 << 20), Some((0x1000_0000, 8 << 20)));
        assert_eq!((retained.count, retained.bytes), (0, 0));
        for slot in 0..Retained::SLOTS {
            assert!(retained.keep(slot << 24, 1 << 20, usize::MAX));
        }
        assert!(
            !retained.keep(1 << 40, 1 << 20, usize::MAX),
            "every slot is taken"
        );
    }

    #[test]
    fn large_blocks_keep_their_contents_and_come_zeroed() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(HugePages::map_large_blocks());
        HugePages::retain_at_most(256 << 20);
        let allocator = HugePages;
        unsafe {
            // A block written and freed is retained; asking for zeroed memory of the same
            // size gets it back cleared.
            let dirty = allocator.alloc(layout(9 << 20));
            assert!(!dirty.is_null());
            assert_eq!(
                dirty as usize % HugePages::HUGE_PAGE,
                0,
                "huge-page aligned"
            );
            std::ptr::write_bytes(dirty, 0xab, 9 << 20);
            allocator.dealloc(dirty, layout(9 << 20));
            assert!(HugePages::retained_bytes() >= 10 << 20);
            let zeroed = allocator.alloc_zeroed(layout(9 << 20));
            assert_eq!(zeroed, dirty, "the retained block is reused");
            let cells = std::slice::from_raw_parts(zeroed, 9 << 20);
            assert!(cells.iter().all(|&b| b == 0));
            // Growing from small to mapped sizes and shrinking back keeps every byte.
            let mut block = allocator.alloc(layout(4096));
            let mut size = 4096;
            for (i, byte) in std::slice::from_raw_parts_mut(block, size)
                .iter_mut()
                .enumerate()
            {
                *byte = (i % 251) as u8;
            }
            for new_size in [2 << 20, 5 << 20, 11 << 20, 3 << 20, 1000] {
                block = allocator.realloc(block, layout(size), new_size);
                assert!(!block.is_null());
                let kept = size.min(new_size).min(4096);
                let bytes = std::slice::from_raw_parts(block, kept);
                assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
                size = new_size;
            }
            allocator.dealloc(block, layout(size));
            allocator.dealloc(zeroed, layout(9 << 20));
        }
        // Used since the last look: kept; unused since: returned.
        HugePages::release_if_idle();
        assert!(HugePages::retained_bytes() > 0);
        HugePages::release_if_idle();
        assert_eq!(HugePages::retained_bytes(), 0);
        HugePages::retain_at_most(0);
    }
}
