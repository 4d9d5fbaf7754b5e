//! IOVA values: ranges, where a mapping goes, and what the device may do through it.

use crate::sys;
use std::fmt;

/// An inclusive IOVA range `[start, last]`, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
///
/// Example: [the `ioas` module docs](crate::ioas).
pub struct IovaRange {
    /// First usable IOVA.
    pub start: u64,
    /// Last usable IOVA (inclusive).
    pub last: u64,
}

impl IovaRange {
    /// Whether `[iova, iova + len)` lies inside this range.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn contains(&self, iova: u64, len: u64) -> bool {
        len > 0 && iova >= self.start && iova.checked_add(len - 1).is_some_and(|l| l <= self.last)
    }
}

impl fmt::Display for IovaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x}]", self.start, self.last)
    }
}

/// The IOVA ranges an IOAS can map, and the alignment the kernel requires.
#[derive(Debug, Clone, PartialEq, Eq)]
///
/// Example: [the `ioas` module docs](crate::ioas).
pub struct IovaRanges {
    /// Usable ranges, ascending.
    pub ranges: Vec<IovaRange>,
    /// Required alignment of IOVA and length (1 before any device is attached).
    pub alignment: u64,
}

impl IovaRanges {
    /// Whether `[iova, iova + len)` lies in one usable range.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub fn contains(&self, iova: u64, len: u64) -> bool {
        self.ranges.iter().any(|r| r.contains(iova, len))
    }
}

impl fmt::Display for IovaRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.ranges.iter().map(|r| r.to_string()).collect();
        write!(f, "{} (alignment {:#x})", list.join(", "), self.alignment)
    }
}

/// Where a mapping goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
///
/// Example: [the `ioas` module docs](crate::ioas).
pub enum Iova {
    /// Exactly at this IOVA (`IOMMU_IOAS_MAP_FIXED_IOVA`).
    Fixed(u64),
    /// Wherever the kernel finds room; [`Mapping::iova`](crate::Mapping::iova) tells where.
    Any,
}

/// What the device may do through a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
///
/// Example: [the `ioas` module docs](crate::ioas).
pub struct Access {
    /// The device may read (DMA from memory).
    pub read: bool,
    /// The device may write (DMA to memory).
    pub write: bool,
}

impl Access {
    /// Device reads only.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub const READ: Access = Access {
        read: true,
        write: false,
    };
    /// Device writes only.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub const WRITE: Access = Access {
        read: false,
        write: true,
    };
    /// Both.
    ///
    /// Example: [the `ioas` module docs](crate::ioas).
    pub const READ_WRITE: Access = Access {
        read: true,
        write: true,
    };

    pub(crate) fn flags(self) -> u32 {
        (if self.read {
            sys::IOMMU_IOAS_MAP_READABLE
        } else {
            0
        }) | (if self.write {
            sys::IOMMU_IOAS_MAP_WRITEABLE
        } else {
            0
        })
    }
}
