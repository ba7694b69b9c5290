//! Bounds-checked access to packet bytes between `data` and `data_end`, in
//! the shape the verifier accepts.

use core::mem::size_of;

/// A pointer to a `T` at `start + off`, if it lies entirely before `end`.
#[inline(always)]
pub fn ptr_at<T>(start: usize, end: usize, off: usize) -> Option<*mut T> {
    if start + off + size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *mut T)
}

/// Read a `T` at `start + off` (unaligned), if in bounds.
#[inline(always)]
pub fn read_at<T: Copy>(start: usize, end: usize, off: usize) -> Option<T> {
    let p = ptr_at::<T>(start, end, off)?;
    // SAFETY: ptr_at checked that size_of::<T>() bytes at p are inside the packet.
    Some(unsafe { core::ptr::read_unaligned(p) })
}
