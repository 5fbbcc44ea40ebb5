//! Giving freed memory back to the system after many connections closed.
//!
//! When a restarted relay's fleet has come back and parked, the memory of
//! thousands of closed QUIC connections is free but glibc's allocator
//! keeps most of it mapped (in the middle of its heaps, in per-thread
//! arenas), so the relay's resident size stays at the storm's peak.
//! `malloc_trim` returns such free pages to the system.

#![allow(unsafe_code)]

/// Returns free heap pages to the system (glibc on Linux; elsewhere a
/// no-op). Takes a few milliseconds on a large heap: call it from a
/// blocking thread, rarely.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only inspects and trims the allocator's own
        // free lists; it takes the arena locks itself and has no
        // preconditions on the caller.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
