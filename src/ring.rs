//! Typed volatile access to DMA memory: single values, and descriptor rings
//! of fixed-size entries.
//!
//! A user-space driver polls completion entries and fills submission
//! entries in memory the device reads and writes at any time. The crate
//! never lends that memory out as `&`/`&mut` (see the crate docs,
//! "Soundness of DMA memory"); these are volatile loads and stores of
//! [`Plain`] values through a [`Mapping`](crate::Mapping), reads through
//! `&self`, writes through `&mut self`, as [`Mapping::read_bytes`](crate::Mapping::read_bytes) and
//! [`Mapping::write_bytes`](crate::Mapping::write_bytes) are.
//!
//! A [`Ring`] is checked once, when it is made: its bytes lie inside the
//! mapping and its base is aligned. An access then checks only the index
//! against the ring's length; a field's offset inside an entry is a const
//! parameter, checked when the program is built. So a field read compiles
//! to one compare and one load (`tests/codegen.rs` checks the assembly).
//!
//! ```no_run
//! use iommufd::{Access, DmaBuffer, Iommufd, Iova};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ioas = Iommufd::open()?.alloc_ioas()?;
//! let mut sq = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::READ).map_err(iommufd::Error::from)?;
//! let cq = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::WRITE).map_err(iommufd::Error::from)?;
//! // 64 submission entries of 64 bytes; write entry 3's command id (bytes 2..4).
//! let mut sqes = sq.ring_mut::<[u8; 64]>(0, 64)?;
//! sqes.set_field::<u16, 2>(3, 0x1234u16.to_le())?;
//! // 256 completion entries of 16 bytes; read entry 0's status word.
//! let cqes = cq.ring::<[u32; 4]>(0, 256)?;
//! let status = u16::from_le(cqes.field::<u16, 14>(0)?);
//! # let _ = status; Ok(()) }
//! ```

use crate::error::{Error, ErrorKind, Result};
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr::NonNull;

/// A value any bit pattern of its size is a valid instance of, with no
/// pointers or references: what a device may leave in DMA memory and the
/// CPU may read back as is. Implemented for the integers and arrays of
/// them.
///
/// # Safety
/// Every bit pattern of `size_of::<Self>()` bytes must be a valid `Self`
/// (so no `bool`, `char`, enums, references or pointers with validity
/// rules), and `Self` must have no interior mutability. A `#[repr(C)]`
/// struct of `Plain` fields qualifies; its padding bytes, if any, are
/// written to the device as whatever they hold.
pub unsafe trait Plain: Copy + 'static {}

macro_rules! plain {
    ($($t:ty),*) => { $(
        // SAFETY: an integer: every bit pattern is a value; no pointers.
        unsafe impl Plain for $t {}
    )* };
}
plain!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, usize, isize);
// SAFETY: an array of `Plain` values is `Plain`: no padding between
// elements, every element valid for every bit pattern.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

/// The alignment a ring's base must have: its entries', and 8 bytes, so
/// that every field of up to 8 bytes that sits at a multiple of its size
/// inside an entry is aligned.
pub(crate) const fn ring_align<E>() -> usize {
    if align_of::<E>() > 8 {
        align_of::<E>()
    } else {
        8
    }
}

/// Compile-time checks of a field `T` at byte `OFF` of an entry `E`.
struct FieldOf<E, T, const OFF: usize>(PhantomData<(E, T)>);

impl<E, T, const OFF: usize> FieldOf<E, T, OFF> {
    const OK: () = assert!(
        OFF + size_of::<T>() <= size_of::<E>()
            && OFF % align_of::<T>() == 0
            && size_of::<E>() % align_of::<T>() == 0
            && align_of::<T>() <= ring_align::<E>(),
        "the field must lie inside the entry, at a multiple of its alignment, in entries whose size is a multiple of it"
    );
}

/// Field `T` at byte `OFF` of the entry at `entry` (the offset checked at
/// build by [`FieldOf`]).
///
/// # Safety
/// `entry` must point at an entry inside a ring made as [`Ring::new`]
/// requires (so aligned to [`ring_align`]); the field then lies inside it,
/// aligned for `T`.
#[inline(always)]
unsafe fn field_at<E, T, const OFF: usize>(entry: *mut E) -> *mut T {
    let () = FieldOf::<E, T, OFF>::OK;
    // SAFETY: `FieldOf` puts `[OFF, OFF + size_of::<T>())` inside the
    // entry, which the caller's contract puts inside the ring.
    unsafe { entry.cast::<u8>().add(OFF).cast() }
}

/// Where `offset` of a mapping's CPU view is, once checked that `len`
/// bytes from it are inside the view and that it is aligned to `align` (a
/// power of two); `None` when not ([`refused`] says which).
#[inline]
pub(crate) fn checked(
    base: NonNull<u8>,
    view: usize,
    offset: usize,
    len: usize,
    align: usize,
) -> Option<NonNull<u8>> {
    let p = base.as_ptr().wrapping_add(offset);
    let inside = offset.checked_add(len).is_some_and(|end| end <= view);
    if !inside || (p as usize) & (align - 1) != 0 {
        return None;
    }
    // SAFETY: `base` is non-null and `p` lies inside its allocation (or one
    // past its end): `offset <= view`. So it is non-null too.
    Some(unsafe { NonNull::new_unchecked(p) })
}

/// Entries `E` in DMA memory, read with volatile loads: made by
/// [`Mapping::ring`](crate::Mapping::ring), which borrows the mapping.
///
/// Example: [the `ring` module docs](crate::ring).
pub struct Ring<'m, E> {
    base: NonNull<E>,
    len: usize,
    /// The mapping's IOAS and IOVA range, to name it in an error.
    ioas: &'m crate::Ioas,
    iova: u64,
    bytes: u64,
}

/// Entries `E` in DMA memory, read and written with volatile loads and
/// stores: made by [`Mapping::ring_mut`](crate::Mapping::ring_mut), which
/// borrows the mapping exclusively.
///
/// Example: [the `ring` module docs](crate::ring).
pub struct RingMut<'m, E> {
    ring: Ring<'m, E>,
}

impl<'m, E: Plain> Ring<'m, E> {
    /// # Safety
    /// `[base, base + len * size_of::<E>())` must be memory of a mapping
    /// that `'m` borrows, aligned to [`ring_align`], that no CPU thread
    /// writes while `'m` lasts unless through a `RingMut` made the same way.
    pub(crate) unsafe fn new(
        base: NonNull<u8>,
        len: usize,
        at: (&'m crate::Ioas, u64, u64),
    ) -> Self {
        Ring {
            base: base.cast(),
            len,
            ioas: at.0,
            iova: at.1,
            bytes: at.2,
        }
    }

    /// How many entries.
    ///
    /// Example: [the `ring` module docs](crate::ring).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entry `i`, read whole with one volatile load.
    ///
    /// # Errors
    /// [`ErrorKind::OutOfRange`] for an index past the end.
    ///
    /// Example: [the `ring` module docs](crate::ring).
    #[inline]
    pub fn get(&self, i: usize) -> Result<E> {
        self.entry(i).map(|e| e.get())
    }

    /// Field `T` at byte `OFF` of entry `i`, with one volatile load. The
    /// offset is checked when the program is built: inside the entry, at a
    /// multiple of `T`'s alignment. (A constant evaluated per use, so
    /// `cargo build` reports it, `cargo check` does not.)
    ///
    /// ```compile_fail,E0080
    /// # use iommufd::{Access, DmaBuffer, Iommufd, Iova};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ioas = Iommufd::open()?.alloc_ioas()?;
    /// let cq = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::WRITE).map_err(iommufd::Error::from)?;
    /// let cqes = cq.ring::<[u32; 4]>(0, 256)?;
    /// let status: u32 = cqes.field::<u32, 14>(0)?; // bytes 14..18 of a 16-byte entry
    /// # let _ = status; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::OutOfRange`] for an index past the end.
    ///
    /// Example: [the `ring` module docs](crate::ring).
    #[inline]
    pub fn field<T: Plain, const OFF: usize>(&self, i: usize) -> Result<T> {
        self.entry(i).map(|e| e.field::<T, OFF>())
    }

    /// Entry `i`, checked once: its fields then read with no check at all
    /// ([`Entry`]), as a completion's status, id and result are.
    ///
    /// # Errors
    /// [`ErrorKind::OutOfRange`] for an index past the end.
    ///
    /// Example: [the `ring` module docs](crate::ring).
    #[inline]
    pub fn entry(&self, i: usize) -> Result<Entry<'_, E>> {
        self.slot(i).map(|p| Entry {
            p,
            _ring: PhantomData,
        })
    }

    /// Where entry `i` is, once checked against the length.
    #[inline]
    fn slot(&self, i: usize) -> Result<*mut E> {
        if i >= self.len {
            return Err(self.past(i));
        }
        // SAFETY: `i < len`: inside the ring (`new`'s contract).
        Ok(unsafe { self.base.as_ptr().add(i) })
    }

    #[cold]
    #[inline(never)]
    fn past(&self, i: usize) -> Error {
        let what = self.ioas.range_object(self.iova, self.bytes);
        Error::new(ErrorKind::OutOfRange, "ring access", what).detail(format!(
            "entry {i} of a ring of {} entries of {} bytes",
            self.len,
            size_of::<E>()
        ))
    }
}

/// One entry of a [`Ring`], checked when made ([`Ring::entry`]): its
/// reads are one volatile load each, with no check.
///
/// Example: [the `ring` module docs](crate::ring).
pub struct Entry<'r, E> {
    p: *const E,
    _ring: PhantomData<&'r E>,
}

impl<E: Plain> Entry<'_, E> {
    /// The entry, read whole with one volatile load.
    #[inline]
    pub fn get(&self) -> E {
        // SAFETY: `Ring::entry` checked `p` inside the ring, which the ring's
        // borrow keeps mapped and aligned; `E: Plain`.
        unsafe { self.p.read_volatile() }
    }

    /// Field `T` at byte `OFF`, with one volatile load (the offset checked
    /// at build, as in [`Ring::field`]).
    #[inline]
    pub fn field<T: Plain, const OFF: usize>(&self) -> T {
        // SAFETY: as in `get`; `field_at`'s contract is the ring's, which
        // `Ring::entry` or `FixedRing::at` checked.
        unsafe { field_at::<E, T, OFF>(self.p.cast_mut()).read_volatile() }
    }
}

impl<'m, E: Plain> RingMut<'m, E> {
    /// # Safety
    /// As [`Ring::new`], and no other CPU access to the memory while `'m`
    /// lasts.
    pub(crate) unsafe fn new(
        base: NonNull<u8>,
        len: usize,
        at: (&'m crate::Ioas, u64, u64),
    ) -> Self {
        RingMut {
            // SAFETY: forwarded: this function's contract is `Ring::new`'s and more.
            ring: unsafe { Ring::new(base, len, at) },
        }
    }

    /// The entries, for reading (see [`Ring`]).
    ///
    /// Example: [the `ring` module docs](crate::ring).
    pub fn as_ring(&self) -> &Ring<'m, E> {
        &self.ring
    }

    /// Writes entry `i` whole with one volatile store.
    ///
    /// # Errors
    /// [`ErrorKind::OutOfRange`] for an index past the end; nothing is written.
    ///
    /// Example: [the `ring` module docs](crate::ring).
    #[inline]
    pub fn set(&mut self, i: usize, v: E) -> Result<()> {
        let p = self.ring.slot(i)?;
        // SAFETY: in bounds and aligned (`slot`); `&mut self` excludes
        // every other CPU access (`new`'s contract).
        unsafe { p.write_volatile(v) };
        Ok(())
    }

    /// Writes field `T` at byte `OFF` of entry `i` with one volatile store
    /// (the offset checked as in [`Ring::field`]).
    ///
    /// # Errors
    /// [`ErrorKind::OutOfRange`] for an index past the end; nothing is written.
    ///
    /// Example: [the `ring` module docs](crate::ring).
    #[inline]
    pub fn set_field<T: Plain, const OFF: usize>(&mut self, i: usize, v: T) -> Result<()> {
        let p = self.ring.slot(i)?;
        // SAFETY: `p` is an entry of the ring (`slot`); `&mut self`
        // excludes every other CPU access.
        unsafe { field_at::<E, T, OFF>(p).write_volatile(v) };
        Ok(())
    }
}

/// The error of an access [`checked`] refused: outside the view, or
/// misaligned.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn refused(
    op: &'static str,
    object: String,
    base: NonNull<u8>,
    offset: usize,
    len: usize,
    view: usize,
    align: usize,
) -> Error {
    let inside = offset.checked_add(len).is_some_and(|end| end <= view);
    let detail = if inside {
        format!(
            "offset {offset:#x} of the mapping (address {:#x}) is not aligned to {align} bytes",
            (base.as_ptr() as usize).wrapping_add(offset)
        )
    } else {
        format!("[{offset:#x}, +{len:#x}) is outside the {view:#x}-byte CPU view of the mapping")
    };
    Error::new(ErrorKind::InvalidInput, op, object).detail(detail)
}

/// `N` entries `E` in DMA memory, `N` a power of two: an index wraps
/// (`i mod N`, one AND), so no access can miss and none returns an error,
/// as a queue's head and tail wrap. Made by
/// [`Mapping::fixed_ring`](crate::Mapping::fixed_ring), checked there once.
///
/// ```no_run
/// use iommufd::{Access, DmaBuffer, Iommufd, Iova};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ioas = Iommufd::open()?.alloc_ioas()?;
/// let cq = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::WRITE).map_err(iommufd::Error::from)?;
/// let cqes = cq.fixed_ring::<[u32; 4], 32>(0)?;
/// let head = 31usize;
/// let status = u16::from_le(cqes.at(head + 1).field::<u16, 14>()); // entry 0
/// # let _ = status; Ok(()) }
/// ```
pub struct FixedRing<'m, E, const N: usize> {
    base: NonNull<E>,
    _m: PhantomData<&'m E>,
}

/// [`FixedRing`] for reads and writes, made by
/// [`Mapping::fixed_ring_mut`](crate::Mapping::fixed_ring_mut), which
/// borrows the mapping exclusively.
///
/// Example: [`FixedRing`].
pub struct FixedRingMut<'m, E, const N: usize> {
    ring: FixedRing<'m, E, N>,
}

struct Pow2<const N: usize>;

impl<const N: usize> Pow2<N> {
    const OK: () = assert!(
        N.is_power_of_two(),
        "a fixed ring's length must be a power of two"
    );
}

impl<'m, E: Plain, const N: usize> FixedRing<'m, E, N> {
    /// # Safety
    /// As [`Ring::new`] with `N` entries.
    pub(crate) unsafe fn new(base: NonNull<u8>) -> Self {
        let () = Pow2::<N>::OK;
        FixedRing {
            base: base.cast(),
            _m: PhantomData,
        }
    }

    /// Entry `i mod N`.
    #[inline]
    pub fn at(&self, i: usize) -> Entry<'_, E> {
        Entry {
            p: self.slot(i),
            _ring: PhantomData,
        }
    }

    /// Where entry `i mod N` is.
    #[inline]
    fn slot(&self, i: usize) -> *mut E {
        // SAFETY: `i & (N - 1) < N`: inside the ring (`new`'s contract).
        unsafe { self.base.as_ptr().add(i & (N - 1)) }
    }
}

impl<'m, E: Plain, const N: usize> FixedRingMut<'m, E, N> {
    /// # Safety
    /// As [`RingMut::new`] with `N` entries.
    pub(crate) unsafe fn new(base: NonNull<u8>) -> Self {
        FixedRingMut {
            // SAFETY: forwarded.
            ring: unsafe { FixedRing::new(base) },
        }
    }

    /// The entries, for reading.
    pub fn as_ring(&self) -> &FixedRing<'m, E, N> {
        &self.ring
    }

    /// Writes entry `i mod N` whole with one volatile store.
    #[inline]
    pub fn set(&mut self, i: usize, v: E) {
        // SAFETY: an entry of the ring (`slot`), aligned; `&mut self`
        // excludes every other CPU access.
        unsafe { self.ring.slot(i).write_volatile(v) }
    }

    /// Writes field `T` at byte `OFF` of entry `i mod N` (the offset
    /// checked at build, as in [`Ring::field`]).
    #[inline]
    pub fn set_field<T: Plain, const OFF: usize>(&mut self, i: usize, v: T) {
        // SAFETY: as in `set`, and `field_at`'s contract is met by `slot`.
        unsafe { field_at::<E, T, OFF>(self.ring.slot(i)).write_volatile(v) }
    }
}
