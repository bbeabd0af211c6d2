//! Giving freed memory back to the system.
//!
//! glibc's malloc keeps freed heap memory for reuse and returns only what sits at the top of a
//! heap; after a burst (sequencing a backlog of tens of thousands of events, a load spike) the
//! service stayed ~30 MiB larger than it needed, idle, indefinitely. `malloc_trim` releases
//! every free page (measured: 35 MiB of anonymous memory down to 3.5 MiB after a 38k-event
//! backlog). Other allocators (musl, or a platform without glibc) need nothing here.

/// Releases the free pages of every malloc arena to the system. Takes a few milliseconds at
/// most; call it after bursts and now and then, not per request.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions: it is thread-safe (it takes each arena's lock)
    // and only returns free memory; no live allocation moves.
    unsafe {
        libc::malloc_trim(0);
    }
}
