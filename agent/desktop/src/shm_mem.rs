//! A private shared-memory buffer for MIT-SHM: an anonymous `memfd` mapped into
//! this process. The only `unsafe` code of the crate lives here.
//!
//! The memory never has a filesystem path (unlike `shm_open` or `/dev/shm`
//! files), so no other local user can open it; only the X server receives the
//! file descriptor, over the X connection's Unix socket. The size is sealed so
//! nobody holding the descriptor can shrink it under our mapping.
#![allow(unsafe_code)]

use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// A read-write shared mapping of a private memfd.
#[derive(Debug)]
pub(crate) struct SharedMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone (no aliases in this
// process); moving it to another thread moves that ownership.
unsafe impl Send for SharedMemory {}

impl SharedMemory {
    /// Creates a `len`-byte memfd, seals its size and maps it. Returns the
    /// mapping and the descriptor to hand to the X server.
    pub(crate) fn new(len: usize) -> std::io::Result<(Self, OwnedFd)> {
        if len == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a shared-memory buffer cannot be empty",
            ));
        }
        let fd = rustix::fs::memfd_create(
            "deskside-capture",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        // SAFETY: we ask the kernel for a fresh mapping (null hint, no
        // MAP_FIXED), so no existing memory is affected; `fd` is a valid memfd
        // of exactly `len` bytes whose size is sealed, so every page of the
        // mapping stays backed for its whole life (no SIGBUS).
        let raw = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let ptr = NonNull::new(raw.cast::<u8>())
            .ok_or_else(|| std::io::Error::other("mmap returned a null pointer"))?;
        Ok((Self { ptr, len }, fd))
    }

    /// The buffer's size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The buffer's contents.
    ///
    /// The X server writes into this memory only while it handles a
    /// `ShmGetImage` request of ours; callers read it after the reply arrived
    /// and before the next request (the returned borrow ties it to `&self`,
    /// and capturing needs `&mut self`).
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` mapped, readable bytes that live until
        // `drop` unmaps them, which cannot happen while this borrow of `self`
        // exists. The bytes are always initialised (the kernel zero-fills a
        // memfd). The only other writer is the X server, which writes only in
        // response to our requests, issued through `&mut` access to the
        // capturer that owns this buffer, so not during this borrow.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping created in `new`, and no
        // borrow of it can outlive `self`.
        if let Err(e) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            tracing::warn!(error = %e, "could not unmap the capture buffer");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_zeroed_buffer_without_a_path() {
        let (mem, fd) = SharedMemory::new(4096 * 3).unwrap();
        assert_eq!(mem.len(), 4096 * 3);
        assert!(mem.as_slice().iter().all(|&b| b == 0));
        // The descriptor's /proc link names a memfd, not a file in /dev/shm.
        let link = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .unwrap();
        let link = link.to_string_lossy().into_owned();
        assert!(link.starts_with("/memfd:deskside-capture"), "{link}");
        // The size is sealed.
        assert!(rustix::fs::ftruncate(&fd, 10).is_err());
    }

    #[test]
    fn refuses_empty_buffer() {
        assert!(SharedMemory::new(0).is_err());
    }
}
