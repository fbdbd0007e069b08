//! `AlignedBuf`: the block-aligned heap buffer every request carries.
//!
//! O_DIRECT wants the user buffer, the file offset and the length aligned to
//! the device's logical block size; aligning everything to [`BLOCK_SIZE`]
//! satisfies every device swapvm targets. The buffer owns one heap
//! allocation that never moves when the `AlignedBuf` value itself is moved,
//! which is what lets the io_uring engine hand its address to the kernel and
//! park the owner in an in-flight table (see `uring.rs`).

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;

use crate::BLOCK_SIZE;

/// Heap buffer aligned to [`BLOCK_SIZE`], whose length is a non-zero
/// multiple of [`BLOCK_SIZE`] (the O_DIRECT requirement).
///
/// Dropping it frees the allocation. Moving it does not move the bytes.
///
/// # Invariants
///
/// `ptr` points to an allocation made with `layout`, which has a non-zero
/// size that is a multiple of `BLOCK_SIZE` and alignment `BLOCK_SIZE`; every
/// byte is initialised (it starts zeroed); the allocation is owned by this
/// value alone and freed only by its `Drop`.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: `AlignedBuf` uniquely owns its allocation, exactly like a
// `Box<[u8]>`; nothing else refers to it, so moving it to another thread moves
// sole ownership of the bytes.
unsafe impl Send for AlignedBuf {}

// SAFETY: there is no interior mutability: `&AlignedBuf` only yields `&[u8]`,
// and mutation needs `&mut AlignedBuf`. Shared references from several
// threads can therefore only read, as with `Box<[u8]>`. (Sync also lets an
// `IoError::Rejected` carrying a request travel inside `anyhow::Error`.)
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates a zero-filled buffer of `len` bytes aligned to [`BLOCK_SIZE`].
    ///
    /// # Panics
    ///
    /// If `len` is zero or not a multiple of [`BLOCK_SIZE`]: a programmer
    /// error, since no block request can have such a length. Aborts through
    /// [`std::alloc::handle_alloc_error`] if the allocation fails.
    pub fn new_zeroed(len: usize) -> AlignedBuf {
        assert!(
            len != 0 && len % BLOCK_SIZE == 0,
            "AlignedBuf length {len} is not a non-zero multiple of {BLOCK_SIZE}"
        );
        let layout = Layout::from_size_align(len, BLOCK_SIZE)
            .expect("AlignedBuf length too large for an allocation");
        // SAFETY: `layout` has a non-zero size (asserted above), which is the
        // only requirement of `alloc_zeroed`.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, layout }
    }

    /// Length in bytes: a non-zero multiple of [`BLOCK_SIZE`].
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Always `false`: an `AlignedBuf` is never empty. Present because
    /// `len` is.
    pub fn is_empty(&self) -> bool {
        self.layout.size() == 0
    }

    /// The bytes, for reading.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: by the type invariant `ptr` is valid for `len` initialised
        // bytes owned by `self`; the shared borrow of `self` keeps them alive
        // and unmutated for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len()) }
    }

    /// The bytes, for writing.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; the exclusive borrow of `self` makes this
        // the only live reference to the bytes for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len()) }
    }

    /// Raw address of the first byte, for handing to the kernel.
    ///
    /// Taken straight from the owning pointer rather than through a slice
    /// reference, so no Rust reference is involved while the kernel holds
    /// the address. The caller must keep `self` alive, and not touch the
    /// bytes, for as long as the kernel may access them.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc_zeroed(self.layout)` and, by
        // the type invariant, is freed only here, once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_zeroed_is_aligned_and_zero() {
        for blocks in [1, 2, 16] {
            let buf = AlignedBuf::new_zeroed(blocks * BLOCK_SIZE);
            assert_eq!(buf.len(), blocks * BLOCK_SIZE);
            assert!(!buf.is_empty());
            assert_eq!(buf.as_slice().as_ptr() as usize % BLOCK_SIZE, 0);
            assert!(buf.as_slice().iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn mut_slice_writes_are_visible() {
        let mut buf = AlignedBuf::new_zeroed(BLOCK_SIZE);
        buf.as_mut_slice()[7] = 0xab;
        buf.as_mut_slice()[BLOCK_SIZE - 1] = 0xcd;
        let moved = buf;
        assert_eq!(moved.as_slice()[7], 0xab);
        assert_eq!(moved.as_slice()[BLOCK_SIZE - 1], 0xcd);
    }

    #[test]
    fn debug_shows_len_only() {
        let buf = AlignedBuf::new_zeroed(2 * BLOCK_SIZE);
        assert_eq!(format!("{buf:?}"), "AlignedBuf { len: 8192, .. }");
    }

    #[test]
    #[should_panic(expected = "not a non-zero multiple")]
    fn zero_len_panics() {
        let _ = AlignedBuf::new_zeroed(0);
    }

    #[test]
    #[should_panic(expected = "not a non-zero multiple")]
    fn unaligned_len_panics() {
        let _ = AlignedBuf::new_zeroed(BLOCK_SIZE + 512);
    }

    #[test]
    fn send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<AlignedBuf>();
    }
}
