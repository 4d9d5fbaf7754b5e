//! One owner per kernel thing, in this process.
//!
//! The crate's types say what a kernel object is doing only while one value
//! can act on it. A second value for the same thing (an IOMMU group opened
//! again, an IOAS id adopted while a handle holds it, a device named twice
//! in one handover) would act behind the first one's type. So each kind of
//! thing a value can be made for *from outside* (a group number, an object
//! id, an mdev instance) is recorded here while a value holds it, and a
//! constructor that would make a second value is refused, naming the
//! holder and the way to reach it.
//!
//! Things the kernel hands out fresh (an id it just allocated, an fd it just
//! opened) cannot be held already; they are recorded so that a later adopt
//! finds them. The tables are process-local, so the checks cost no syscall:
//! a lock and a short scan, on constructors only, never on a map or an
//! attach.
//!
//! What a table cannot see is a second process: that is the kernel's to
//! refuse (a group's DMA ownership, a cdev bound once).

use crate::error::{Error, ErrorKind, Result};
use crate::iommufd::Iommufd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// IOMMU group numbers held by a [`Group`](crate::Group) value (any
/// state), process-wide.
static GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Names (UUIDs) of mdev instances whose VFIO device is open in this
/// process, one entry per open [`Device`](crate::Device).
static OPEN_MDEVS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The tables hold plain data: a panic elsewhere cannot leave them torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn remove_one<T: PartialEq>(v: &mut Vec<T>, x: &T) {
    if let Some(i) = v.iter().position(|y| y == x) {
        v.swap_remove(i);
    }
}

/// IOMMU group `number`, held by one [`Group`](crate::Group) value of this
/// process until it drops (a leaked group stays held, as its fds do).
#[derive(Debug)]
pub(crate) struct GroupClaim(u32);

impl GroupClaim {
    /// Claims group `number` for a value being opened.
    ///
    /// # Errors
    /// [`ErrorKind::Busy`] when a `Group` of this process holds it: the
    /// kernel moves a group's DMA as one, so a second value's members would
    /// be typed by one value and reach the page table of the other.
    pub(crate) fn take(number: u32) -> Result<GroupClaim> {
        let mut g = lock(&GROUPS);
        if g.contains(&number) {
            return Err(group_held(number));
        }
        g.push(number);
        Ok(GroupClaim(number))
    }

    pub(crate) fn number(&self) -> u32 {
        self.0
    }
}

impl Drop for GroupClaim {
    fn drop(&mut self) {
        remove_one(&mut lock(&GROUPS), &self.0);
    }
}

#[cold]
fn group_held(number: u32) -> Error {
    Error::new(ErrorKind::Busy, "open IOMMU group", format!("group {number}"))
        .detail("a Group value of this process holds this group already; the kernel moves a group's DMA as one, so the devices of a second value would be typed by it while their DMA follows the first one's page table")
        .hint("reach the group through the value that holds it: Group::add for another member, Group::rejoin for a released one")
}

/// Ids below this are recorded as bits: the kernel hands out the lowest
/// free id of an iommufd, so nearly every id is one of them.
const LOW_IDS: u32 = 512;

/// The object ids of one iommufd held by values of this process. The low
/// ones are bits, each taken and given back with one atomic instruction:
/// a `Mutex<Vec>` here cost every object allocation and destroy about 100
/// instructions (the lock twice, a push, a search; #29). Higher ids go to
/// a list.
#[derive(Default)]
pub(crate) struct HeldIds {
    low: [AtomicU64; (LOW_IDS / 64) as usize],
    high: Mutex<Vec<u32>>,
}

impl HeldIds {
    /// The word and bit of a low `id`; `None` for a high one.
    #[inline]
    fn bit(&self, id: u32) -> Option<(&AtomicU64, u64)> {
        let word = self.low.get((id / 64) as usize)?;
        Some((word, 1u64 << (id % 64)))
    }

    /// Records `id` held; false (and nothing changed) when it already was.
    #[inline]
    fn take(&self, id: u32) -> bool {
        match self.bit(id) {
            Some((word, bit)) => word.fetch_or(bit, Ordering::AcqRel) & bit == 0,
            None => {
                let mut high = lock(&self.high);
                if high.contains(&id) {
                    return false;
                }
                high.push(id);
                true
            }
        }
    }

    /// Records `id` no longer held.
    #[inline]
    fn give_back(&self, id: u32) {
        match self.bit(id) {
            Some((word, bit)) => {
                word.fetch_and(!bit, Ordering::AcqRel);
            }
            None => remove_one(&mut lock(&self.high), &id),
        }
    }
}

/// An object id of one iommufd held by exactly one value of this process
/// (an [`Ioas`](crate::Ioas)'s shared inner). It carries its iommufd, so
/// every object knows where it lives.
pub(crate) struct HeldId {
    iommufd: Iommufd,
    id: u32,
}

impl HeldId {
    /// An id the kernel just allocated in `iommufd`: nothing can hold it.
    #[inline]
    pub(crate) fn fresh(iommufd: &Iommufd, id: u32) -> HeldId {
        // Held already only by a value that was forgotten (a handover
        // forgets what it sent) after another process destroyed its object:
        // that record was stale, and now stands for this value.
        iommufd.held().take(id);
        HeldId {
            iommufd: iommufd.clone(),
            id,
        }
    }

    /// An id received from elsewhere (a handover), for a value about to be
    /// made for it.
    ///
    /// # Errors
    /// [`ErrorKind::Busy`] when a value of this process holds it already
    /// (`what`: "IOAS"), whose handle to clone instead.
    pub(crate) fn adopt(iommufd: &Iommufd, id: u32, what: &str) -> Result<HeldId> {
        if !iommufd.held().take(id) {
            return Err(id_held(id, what));
        }
        Ok(HeldId {
            iommufd: iommufd.clone(),
            id,
        })
    }

    pub(crate) fn iommufd(&self) -> &Iommufd {
        &self.iommufd
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }
}

impl Drop for HeldId {
    #[inline]
    fn drop(&mut self) {
        self.iommufd.held().give_back(self.id);
    }
}

#[cold]
fn id_held(id: u32, what: &str) -> Error {
    Error::new(ErrorKind::Busy, "adopt", format!("{what} {id}"))
        .detail(format!("a value of this process holds {what} {id} of this iommufd already; a second one would destroy it under the first (and later whatever the kernel gives the id to next)"))
        .hint(format!("clone the handle that holds {what} {id} instead of adopting it again"))
}

/// An mdev instance whose VFIO device a [`Device`](crate::Device) of this
/// process has open.
#[derive(Debug)]
pub(crate) struct OpenMdev(String);

impl OpenMdev {
    /// Records `uuid` open for one more device value.
    pub(crate) fn new(uuid: &str) -> OpenMdev {
        lock(&OPEN_MDEVS).push(uuid.to_string());
        OpenMdev(uuid.to_string())
    }

    /// Whether a device value of this process has `uuid` open.
    pub(crate) fn is_open(uuid: &str) -> bool {
        lock(&OPEN_MDEVS).iter().any(|u| u == uuid)
    }
}

impl Drop for OpenMdev {
    fn drop(&mut self) {
        remove_one(&mut lock(&OPEN_MDEVS), &self.0);
    }
}

/// Refuses, before any ioctl, objects of different iommufds in one
/// operation: ids are per iommufd, so the kernel would look the others up
/// in the first one's table and find whatever has those ids there (an
/// unrelated object, which the handle made from the answer would later
/// destroy). `parts` are each object's iommufd and what it is ("the IOAS",
/// "the nest parent"); the first is the one the call is made on (the
/// device's). Every constructor that takes two objects goes through here.
#[inline]
pub(crate) fn same_iommufd(
    op: &'static str,
    obj: impl FnOnce() -> String,
    first: &Iommufd,
    parts: &[(&Iommufd, &str)],
) -> Result<()> {
    match parts.iter().find(|(fd, _)| !fd.same_as(first)) {
        None => Ok(()),
        Some((_, what)) => Err(foreign(op, obj(), what)),
    }
}

#[cold]
fn foreign(op: &'static str, obj: String, what: &str) -> Error {
    Error::new(ErrorKind::InvalidInput, op, obj)
        .detail(format!(
            "{what} belongs to another iommufd than the one the device is bound to; object ids are per iommufd, so the kernel would find whatever has that id in the device's"
        ))
        .hint(format!(
            "allocate {what} on the same Iommufd (or a clone of it) that the device was bound to"
        ))
}

#[cfg(test)]
mod tests {
    use super::HeldIds;

    /// Low ids and high ones are taken once, refused while held, and free
    /// again once given back.
    #[test]
    fn ids_are_held_once() {
        let held = HeldIds::default();
        for id in [0, 1, 63, 64, 511, 512, 4096, u32::MAX] {
            assert!(held.take(id), "{id} free");
            assert!(!held.take(id), "{id} held");
            held.give_back(id);
            assert!(held.take(id), "{id} free again");
        }
        // Neighbours do not disturb each other.
        held.give_back(63);
        assert!(!held.take(64));
        assert!(held.take(63));
    }
}
