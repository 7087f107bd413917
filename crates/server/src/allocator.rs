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

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

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
                if due {
                    // Walks every arena: milliseconds for hundreds of megabytes, not for the
                    // runtime's threads.
                    let _ = tokio::task::spawn_blocking(trim).await;
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
