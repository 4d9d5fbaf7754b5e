//! IOMMU groups with more than one device, on the VFIO cdev.
//!
//! The kernel's unit of DMA isolation is the IOMMU group. Binding any device of
//! a group claims DMA ownership of the whole group; the first attach moves the
//! whole group to the IOAS's page table, and every bound device of the group
//! must then use that same IOAS (the kernel answers `EINVAL` otherwise).
//!
//! A [`Group`] owns the member devices and only moves them together, so two
//! members can never be attached to different IOASes, and no member can be
//! taken out and attached alone: the group hands out shared references to its
//! members (for MMIO, config space, IRQs), never the devices themselves nor
//! `&mut` to them. It holds no lifetimes, so a VMM can store it and move it
//! between threads.
//!
//! ```no_run
//! use iommufd::{Access, DmaBuffer, Group, Iommufd, Iova};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fd = Iommufd::open()?;
//! let ioas = fd.alloc_ioas()?;
//! let group = Group::open_containing("0000:01:01.0")?; // every vfio-pci member, viability checked
//! let mut group = group.bind(&fd)?;                    // all to one iommufd, or none
//! group.map_bar(0, 0)?;
//! let group = group.attach(&ioas)?;                    // all to one IOAS, or none
//! let buf = ioas.map(DmaBuffer::new(4096)?, Iova::Any, Access::READ_WRITE)?;
//! let first = group.member(0).unwrap();                // lent, never given
//! println!("{} sees {:#x} at IOVA {:#x}", first.name(), first.mmio(0)?.read32(0)?, buf.iova());
//! let other = fd.alloc_ioas()?;
//! let group = group.replace(&other)?;                  // the whole group moves
//! # Ok(())
//! # }
//! ```
//!
//! The same group on the legacy path (a kernel without the cdev picks it by
//! itself; here it is forced):
//!
//! ```no_run
//! use iommufd::{Group, Iommufd};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fd = Iommufd::open_legacy()?;                    // type1v2 containers, one per group
//! let ioas = fd.alloc_ioas()?;
//! let group = Group::open_legacy(3)?.bind(&fd)?;       // /dev/vfio/3 into its own container
//! let group = group.attach(&ioas)?;                    // the IOAS's mappings replayed into it
//! let group = group.detach()?;                         // all unmapped: DMA blocked again
//! # Ok(())
//! # }
//! ```

//!
//! A VMM may pass through only some members, and members may join and leave
//! a bound group (the seed's Stage-2, steps 6 and 8). The kernel keeps the
//! whole group in one context while any member is bound, so a member that
//! joins is typed in the group's state at once, and a member that leaves
//! becomes a [`Released`], never a [`Device`]: it could otherwise be bound
//! alone and typed `BlockDma` while its group's IOAS still reaches it.
//!
//! ```no_run
//! use iommufd::{Group, Iommufd};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fd = Iommufd::open()?;
//! let ioas = fd.alloc_ioas()?;
//! // One function passed through; the other stays on vfio-pci, unopened.
//! let mut group = Group::open_members(3, &["0000:01:02.0"])?.bind(&fd)?.attach(&ioas)?;
//! group.add("0000:01:01.0")?;      // step 6: it joins attached to `ioas`, as it is
//! let gone = group.release(0)?;    // step 8: unbound, but its group is still attached
//! group.rejoin(gone)?;             // the only way back in
//! let group = group.detach()?.unbind()?; // step 9: the group returns to the kernel
//! # Ok(())
//! # }
//! ```

use crate::device::{Attached, BlockDma, Bound, Device, State, Unbound};
use crate::diagnose;
use crate::error::{Error, ErrorKind, Fallback, Result, TransitionError};
use crate::hwpt::PageTable;
use crate::ioas::Ioas;
use crate::iommufd::Iommufd;
use crate::owner::GroupClaim;
use crate::sysfs::{self, PciDevice};
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

/// The devices of one IOMMU group, in state `S`, moved together.
///
/// Example: [the `group` module docs](crate::group).
pub struct Group<S: State> {
    members: Vec<Device<S>>,
    /// The group number, held by this value alone in this process (after
    /// the members: their fds close first).
    claim: GroupClaim,
    state: PhantomData<S>,
}

fn group<S: State>(claim: GroupClaim, members: Vec<Device<S>>) -> Group<S> {
    Group {
        members,
        claim,
        state: PhantomData,
    }
}

impl<S: State> Group<S> {
    /// The IOMMU group number.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn number(&self) -> u32 {
        self.claim.number()
    }

    /// The member devices' names (BDFs), in BDF order.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn member_names(&self) -> Vec<&str> {
        self.members.iter().map(|d| d.name()).collect()
    }

    /// How many member devices the group holds.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true: a group holds at least one device.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn member_error(&self, k: usize, e: Error) -> Error {
        member_error(self.number(), k, self.members.len(), e)
    }
}

/// `e` of member `k` (from 0) of group `number`, which has `n` members:
/// the object says which.
fn member_error(number: u32, k: usize, n: usize, e: Error) -> Error {
    let obj = format!("group {number} member {} of {n} ({})", k + 1, e.object());
    e.with_object(obj)
}

/// Detaches each of `members` into `blocked`; one the kernel will not
/// detach is dropped (its fd closes, which detaches it) and named in
/// `closed`.
fn detach_into<P: PageTable>(
    members: Vec<Device<Attached<P>>>,
    blocked: &mut Vec<Device<BlockDma>>,
    closed: &mut Vec<String>,
) {
    for d in members {
        match d.detach() {
            Ok(b) => blocked.push(b),
            Err(de) => {
                let (d, de) = de.into_parts();
                closed.push(format!("{} ({de})", d.name()));
            }
        }
    }
}

/// After a failure that may have lost a group's attachment: the detached
/// members attached to `pt` again, all or none; the error says where the
/// group is now.
#[cold]
#[inline(never)]
fn reestablish<P: PageTable>(
    claim: GroupClaim,
    blocked: Vec<Device<BlockDma>>,
    closed: &[String],
    pt: &P,
    e: Error,
) -> (GroupReplaced<P>, Error) {
    let id = pt.pt_id();
    let closed = if closed.is_empty() {
        String::new()
    } else {
        format!(
            "; closed, since they could not be detached: {}",
            closed.join(", ")
        )
    };
    if blocked.is_empty() {
        return (
            Fallback::Closed,
            e.append_detail(format!("the old attachment may be lost and no member could be detached to re-establish it{closed}")),
        );
    }
    match move_all(claim, blocked, |d| d.attach(pt), |d| d.detach()) {
        Ok(g) => (
            Fallback::Kept(g),
            e.append_detail(format!(
                "the group was detached and attached to page table {id} again, where it is now{closed}"
            )),
        ),
        Err(ae) => {
            let (g, ae) = ae.into_parts();
            (
                Fallback::Blocked(g),
                e.append_detail(format!(
                    "the old attachment may be lost, and attaching the group to page table {id} again failed ({ae}): the group is blocked (BlockDma){closed}"
                )),
            )
        }
    }
}

/// A step of a group transition, with the undo for the members already moved.
fn move_all<A: State, B: State>(
    claim: GroupClaim,
    members: Vec<Device<A>>,
    step: impl Fn(Device<A>) -> std::result::Result<Device<B>, TransitionError<Device<A>>>,
    undo: impl Fn(Device<B>) -> std::result::Result<Device<A>, TransitionError<Device<B>>>,
) -> std::result::Result<Group<B>, TransitionError<Group<A>>> {
    let n = members.len();
    let mut done: Vec<Device<B>> = Vec::with_capacity(n);
    let mut rest = members.into_iter();
    while let Some(dev) = rest.next() {
        match step(dev) {
            Ok(d) => done.push(d),
            Err(e) => {
                let k = done.len();
                let (failed, err) = e.into_parts();
                let mut back: Vec<Device<A>> = Vec::with_capacity(n);
                let mut lost = Vec::new();
                for d in done {
                    match undo(d) {
                        Ok(d) => back.push(d),
                        Err(e) => {
                            // The kernel refused to undo: the member is closed
                            // (its fd released), which returns it to the kernel.
                            let (d, e) = e.into_parts();
                            lost.push(format!("{} ({e})", d.name()));
                        }
                    }
                }
                back.push(failed);
                back.extend(rest);
                let g = group(claim, back);
                let mut err = g.member_error(k, err);
                err = if lost.is_empty() {
                    err.append_detail(format!("the {k} member(s) already moved were rolled back"))
                } else {
                    err.append_detail(format!("rollback failed for {}: closed", lost.join(", ")))
                };
                return Err(TransitionError::new(g, err));
            }
        }
    }
    Ok(group(claim, done))
}

impl Group<Unbound> {
    /// Opens every device of IOMMU group `number` that is on vfio-pci.
    ///
    /// # Errors
    /// [`ErrorKind::GroupNotViable`] when a member is on a driver that does
    /// its own DMA (naming it, its driver, and the commands that rebind it),
    /// checked here so the error says more than the kernel's `EPERM` at bind;
    /// [`ErrorKind::InvalidInput`] when no member is on vfio-pci.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn open(number: u32) -> Result<Self> {
        Self::open_in(
            Path::new("/sys"),
            Path::new("/dev"),
            number,
            crate::backend::detect(),
            None,
        )
    }

    /// Opens group `number` through the legacy path (`/dev/vfio/<number>`),
    /// even when the kernel has the cdev; bind it to an [`Iommufd::open_legacy`] context.
    ///
    /// # Errors
    /// As [`open`](Self::open); [`ErrorKind::PathConflict`] when a device of the
    /// group is bound through the cdev.
    pub fn open_legacy(number: u32) -> Result<Self> {
        Self::open_in(
            Path::new("/sys"),
            Path::new("/dev"),
            number,
            crate::Backend::LegacyContainer,
            None,
        )
    }

    /// Opens the group that `bdf` belongs to.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn open_containing(bdf: &str) -> Result<Self> {
        Self::open(sysfs::group_of(Path::new("/sys"), bdf)?)
    }

    /// Opens only `bdfs` of IOMMU group `number` (seed Stage-2, step 6: a
    /// VMM passes through some functions of a device and leaves the others
    /// on vfio-pci, unopened). The group must still be viable, as for
    /// [`open`](Self::open): every other member on vfio-pci, pci-stub or no
    /// driver. Members can join later with [`Group::add`].
    ///
    /// # Errors
    /// As [`open`](Self::open); [`ErrorKind::InvalidInput`] when `bdfs` is
    /// empty or names a device that is not a member on vfio-pci.
    pub fn open_members(number: u32, bdfs: &[&str]) -> Result<Self> {
        Self::open_some(number, bdfs, crate::backend::detect())
    }

    /// [`open_members`](Self::open_members) through the legacy path.
    pub fn open_members_legacy(number: u32, bdfs: &[&str]) -> Result<Self> {
        Self::open_some(number, bdfs, crate::Backend::LegacyContainer)
    }

    fn open_some(number: u32, bdfs: &[&str], backend: crate::Backend) -> Result<Self> {
        let (sys, dev) = (Path::new("/sys"), Path::new("/dev"));
        let members = sysfs::group_members(sys, number)?;
        let object = || format!("group {number}");
        if bdfs.is_empty() {
            return Err(
                Error::new(ErrorKind::InvalidInput, "open IOMMU group", object())
                    .detail("no member named: open at least one"),
            );
        }
        for b in bdfs {
            if !members
                .iter()
                .any(|m| m.bdf == *b && m.driver.as_deref() == Some("vfio-pci"))
            {
                let all: Vec<String> = members
                    .iter()
                    .map(|m| format!("{} ({})", m.bdf, m.driver.as_deref().unwrap_or("no driver")))
                    .collect();
                return Err(
                    Error::new(ErrorKind::InvalidInput, "open IOMMU group", object()).detail(
                        format!(
                            "{b} is not a member on vfio-pci (members: {})",
                            all.join(", ")
                        ),
                    ),
                );
            }
        }
        Self::open_in(sys, dev, number, backend, Some(bdfs))
    }

    pub(crate) fn open_in(
        sys: &Path,
        dev: &Path,
        number: u32,
        backend: crate::Backend,
        only: Option<&[&str]>,
    ) -> Result<Self> {
        let claim = GroupClaim::take(number)?;
        let members = sysfs::group_members(sys, number)?;
        let bad: Vec<PciDevice> = members
            .iter()
            .filter(|m| !m.is_dma_safe())
            .cloned()
            .collect();
        if !bad.is_empty() {
            return Err(diagnose::not_viable(
                "open IOMMU group",
                &format!("group {number}"),
                &bad,
            ));
        }
        let vfio: Vec<&PciDevice> = members
            .iter()
            .filter(|m| m.driver.as_deref() == Some("vfio-pci"))
            .filter(|m| only.is_none_or(|o| o.contains(&m.bdf.as_str())))
            .collect();
        if vfio.is_empty() {
            let all: Vec<&str> = members.iter().map(|m| m.bdf.as_str()).collect();
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "open IOMMU group",
                format!("group {number}"),
            )
            .detail(format!(
                "no member is on vfio-pci (members: {})",
                all.join(", ")
            ))
            .hint(
                members
                    .iter()
                    .map(PciDevice::rebind_hint)
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        let mut devs = Vec::new();
        match backend {
            crate::Backend::Iommufd => {
                for m in vfio {
                    devs.push(Device::open_member(sys, dev, &m.bdf)?);
                }
            }
            crate::Backend::LegacyContainer => {
                let g = crate::backend::legacy::open_group(dev, number)?;
                for m in vfio {
                    devs.push(Device::open_legacy_member(g.clone(), &m.bdf)?);
                }
            }
        }
        Ok(group(claim, devs))
    }

    /// Binds every member to `iommufd`. The first bind claims DMA ownership of
    /// the whole group (blocking domain); all members must bind to one iommufd.
    ///
    /// # Errors
    /// If member k fails, members 1..k are unbound again and the group comes
    /// back whole, unbound; the error names the member.
    #[doc(alias = "VFIO_DEVICE_BIND_IOMMUFD")]
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn bind(
        self,
        iommufd: &Iommufd,
    ) -> std::result::Result<Group<BlockDma>, TransitionError<Self>> {
        move_all(
            self.claim,
            self.members,
            |d| d.bind(iommufd),
            |d| d.unbind(),
        )
    }
}

impl Group<BlockDma> {
    /// Attaches the whole group to `ioas`.
    ///
    /// # Errors
    /// If member k fails, members 1..k are detached again (back to blocking).
    #[doc(alias = "VFIO_DEVICE_ATTACH_IOMMUFD_PT")]
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn attach<P: PageTable>(
        self,
        pt: &P,
    ) -> std::result::Result<Group<Attached<P>>, TransitionError<Self>> {
        move_all(self.claim, self.members, |d| d.attach(pt), |d| d.detach())
    }
}

impl<P: PageTable> Group<Attached<P>> {
    /// Moves the whole group to `ioas` (each member's replace is atomic).
    ///
    /// # Errors
    /// If member k fails, members 1..k are moved back to the current IOAS,
    /// and the group comes back as [`Fallback::Kept`]. When a failure may
    /// have lost the group's attachment (see [`Device::replace`]), or moving
    /// a member back fails, every member is detached and the group attached
    /// to the current IOAS again: the group comes back `Kept` there, or
    /// [`Fallback::Blocked`] if that attach fails; a member that cannot even
    /// be detached is closed, and named in the error.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn replace<Q: PageTable>(
        self,
        to: &Q,
    ) -> std::result::Result<Group<Attached<Q>>, TransitionError<GroupReplaced<P>>> {
        let old = self.page_table();
        let claim = self.claim;
        let number = claim.number();
        let n = self.members.len();
        let mut done = Vec::with_capacity(n);
        let mut rest = self.members.into_iter();
        while let Some(d) = rest.next() {
            let (failed, err, mut lost) = match d.replace_once(to) {
                Ok(d) => {
                    done.push(d);
                    continue;
                }
                Err(e) => e,
            };
            let k = done.len();
            let err = member_error(number, k, n, err);
            let mut back = Vec::with_capacity(n);
            // Members that could not be moved back: still on `to`, or worse.
            let mut stuck = Vec::new();
            for d in done {
                match d.replace_once(&old) {
                    Ok(d) => back.push(d),
                    Err((d, _, _)) => {
                        lost = true;
                        stuck.push(d);
                    }
                }
            }
            back.push(failed);
            back.extend(rest);
            if !lost {
                let err =
                    err.append_detail(format!("the {k} member(s) already moved were moved back"));
                return Err(TransitionError::new(
                    Fallback::Kept(group(claim, back)),
                    err,
                ));
            }
            // Only the whole group's re-establishment makes the types true
            // again: every member detached (a known state), then all
            // attached to the old page table, all or none.
            let mut blocked = Vec::with_capacity(n);
            let mut closed = Vec::new();
            detach_into(back, &mut blocked, &mut closed);
            detach_into(stuck, &mut blocked, &mut closed);
            let (back, err) = reestablish(claim, blocked, &closed, &old, err);
            return Err(TransitionError::new(back, err));
        }
        Ok(group(claim, done))
    }

    /// Detaches the whole group: back to the blocking domain.
    #[doc(alias = "VFIO_DEVICE_DETACH_IOMMUFD_PT")]
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn detach(self) -> std::result::Result<Group<BlockDma>, TransitionError<Self>> {
        let pt = self.page_table();
        move_all(self.claim, self.members, |d| d.detach(), |d| d.attach(&pt))
    }

    /// The IOAS every member is attached to (an HWPT's IOAS, when the page
    /// table is one).
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn ioas(&self) -> &Ioas {
        self.members[0].ioas()
    }

    /// The page table every member is attached to (a handle).
    pub fn page_table(&self) -> P {
        self.members[0].page_table()
    }
}

impl Group<BlockDma> {
    /// Opens member `bdf` and binds it to the group's iommufd (seed
    /// Stage-2, step 6: "binding other devices in the same group just
    /// succeed"); it joins the group in the blocking domain.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a device that is not a member of this
    /// group, or is one already; the errors of [`Device::bind`]. The group is
    /// unchanged.
    #[doc(alias = "VFIO_DEVICE_BIND_IOMMUFD")]
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn add(&mut self, bdf: &str) -> Result<()> {
        let d = self.joining(bdf)?;
        self.insert(d);
        Ok(())
    }

    /// Takes back a member [`release`](Group::release)d from this group.
    ///
    /// # Errors
    /// As [`add`](Self::add), and when `member` was released from another
    /// group or a group bound to another iommufd; `member` is handed back.
    pub fn rejoin(
        &mut self,
        member: Released,
    ) -> std::result::Result<(), TransitionError<Released>> {
        self.rejoin_by(member, Self::add)
    }
}

impl<P: PageTable> Group<Attached<P>> {
    /// Opens member `bdf`, binds it to the group's iommufd and attaches it
    /// to the group's page table (seed Stage-2, step 6). It is typed attached
    /// because it is: once bound, a member of an attached group reaches
    /// the group's page table whether it is attached or not.
    ///
    /// # Errors
    /// As [`Group::<BlockDma>::add`](Group::add); a failed attach closes the
    /// new member again. The group is unchanged.
    #[doc(alias = "VFIO_DEVICE_ATTACH_IOMMUFD_PT")]
    pub fn add(&mut self, bdf: &str) -> Result<()> {
        let d = self
            .joining(bdf)?
            .attach(&self.page_table())
            .map_err(Error::from)?;
        self.insert(d);
        Ok(())
    }

    /// Takes back a member [`release`](Group::release)d from this group,
    /// attached to the group's IOAS.
    ///
    /// # Errors
    /// As [`add`](Self::add); `member` is handed back.
    pub fn rejoin(
        &mut self,
        member: Released,
    ) -> std::result::Result<(), TransitionError<Released>> {
        self.rejoin_by(member, Self::add)
    }
}

impl Group<Unbound> {
    /// Takes back a member released from this group before it was unbound:
    /// opened again, unbound, like the others.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a member of another group; the
    /// errors of opening it. `member` is handed back.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn rejoin(
        &mut self,
        member: Released,
    ) -> std::result::Result<(), TransitionError<Released>> {
        let opened = self
            .check_number(&member)
            .and_then(|()| Device::sibling(&self.members[0], &member.bdf));
        match opened {
            Ok(d) => {
                self.insert(d);
                Ok(())
            }
            Err(e) => Err(TransitionError::new(member, e)),
        }
    }
}

/// A member [`release`](Group::release)d from a group whose other members
/// are still bound (seed Stage-2, step 8).
///
/// The kernel has unbound it, but its IOMMU group, and so its DMA, stays in
/// the group's context (blocking, or the group's IOAS) until the last member
/// is unbound. A `Device` made of it could be bound alone and typed
/// [`BlockDma`] while it reaches that IOAS, so it is not one: it has no fd
/// and no methods that reach the device; it can only
/// [`rejoin`](Group::rejoin) its group, or be dropped.
#[derive(Debug)]
pub struct Released {
    number: u32,
    bdf: String,
    iommufd: Iommufd,
}

impl Released {
    /// The member's name (its BDF).
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn name(&self) -> &str {
        &self.bdf
    }

    /// The IOMMU group it belongs to.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn group(&self) -> u32 {
        self.number
    }
}

/// What a failed [`Group::replace`] hands back (see [`Fallback`]).
///
/// Example: [the `group` module docs](crate::group).
pub type GroupReplaced<P = Ioas> = Fallback<Group<Attached<P>>, Group<BlockDma>>;

impl<S: Bound> Group<S> {
    /// Member `i` (in BDF order), for MMIO, config space and IRQs. Only a
    /// shared reference: members move with the group, never alone.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn member(&self, i: usize) -> Option<&Device<S>> {
        self.members.get(i)
    }

    /// Every member.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn members(&self) -> &[Device<S>] {
        &self.members
    }

    /// The iommufd every member is bound to.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn iommufd(&self) -> &Iommufd {
        self.members[0].iommufd()
    }

    /// Releases member `i` while the others stay bound (seed Stage-2, step
    /// 8): its BARs are unmapped and its fd closed, so the kernel unbinds
    /// it, and it comes back as a [`Released`], which can only rejoin the
    /// group. Releasing the last member is [`unbind`](Self::unbind), which
    /// returns the group to the kernel.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an index past the members, or the
    /// last member; the group is unchanged.
    pub fn release(&mut self, i: usize) -> Result<Released> {
        let object = || format!("group {} member {i}", self.number());
        if i >= self.members.len() {
            return Err(Error::new(ErrorKind::InvalidInput, "release", object())
                .detail(format!("the group has {} member(s)", self.members.len())));
        }
        if self.members.len() == 1 {
            return Err(Error::new(ErrorKind::InvalidInput, "release", object())
                .detail("the last bound member cannot be released: the group would keep its context with no one to own it")
                .hint("Group::unbind returns the group to the kernel and hands back ordinary unbound devices"));
        }
        let iommufd = self.iommufd().clone();
        let d = self.members.remove(i);
        let bdf = d.name().to_string();
        drop(d); // BARs unmapped, fd closed: the kernel unbinds it.
        Ok(Released {
            number: self.number(),
            bdf,
            iommufd,
        })
    }

    /// `bdf`, a member of this group not open yet, bound to the group's
    /// iommufd.
    fn joining(&self, bdf: &str) -> Result<Device<BlockDma>> {
        let object = || format!("group {} {bdf}", self.number());
        if self.members.iter().any(|m| m.name() == bdf) {
            return Err(Error::new(ErrorKind::InvalidInput, "add", object())
                .detail("already a member of the group"));
        }
        let group = sysfs::group_of(Path::new("/sys"), bdf)?;
        if group != self.number() {
            return Err(
                Error::new(ErrorKind::InvalidInput, "add", object()).detail(format!(
                    "{bdf} is in IOMMU group {group}, not {}",
                    self.number()
                )),
            );
        }
        let d = Device::sibling(&self.members[0], bdf)?;
        d.bind(self.iommufd()).map_err(Error::from)
    }

    /// `rejoin` of a bound group: the checks, then the state's own `add`.
    fn rejoin_by(
        &mut self,
        member: Released,
        add: fn(&mut Self, &str) -> Result<()>,
    ) -> std::result::Result<(), TransitionError<Released>> {
        match self
            .check_released(&member)
            .and_then(|()| add(self, &member.bdf))
        {
            Ok(()) => Ok(()),
            Err(e) => Err(TransitionError::new(member, e)),
        }
    }

    /// A released member of this group, released while bound to the same
    /// iommufd (the kernel gives `EPERM` for another).
    fn check_released(&self, r: &Released) -> Result<()> {
        self.check_number(r)?;
        if r.iommufd.same_as(self.iommufd()) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::InvalidInput,
            "rejoin",
            format!("group {} {}", self.number(), r.bdf),
        )
        .detail("the member was released from this group while it was bound to another iommufd")
        .hint("rejoin it to the group on that iommufd, or unbind the group first"))
    }

    /// Maps BAR `index` of member `i` (see [`Device::map_bar`]).
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn map_bar(&mut self, i: usize, index: u32) -> Result<()> {
        let n = self.number();
        self.members
            .get_mut(i)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    "map BAR",
                    format!("group {n} member {i}"),
                )
                .detail("no such member")
            })?
            .map_bar(index)
    }

    /// Unbinds every member; when the last closes its bound fd the group
    /// returns to the kernel's default domain.
    ///
    /// # Errors
    /// Only if a member's cdev cannot be reopened. Unbinding is closing, so
    /// every member is unbound either way; on error the group is gone (all
    /// fds closed) and the error names the member that could not be reopened.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn unbind(self) -> std::result::Result<Group<Unbound>, Error> {
        let mut out = Vec::new();
        for d in self.members {
            out.push(d.unbind().map_err(Error::from)?);
        }
        Ok(group(self.claim, out))
    }

    /// Closes every member.
    ///
    /// Example: [the `group` module docs](crate::group).
    pub fn close(self) {}
}

impl<S: State> Group<S> {
    /// Inserts `d` in BDF order.
    fn insert(&mut self, d: Device<S>) {
        let at = self.members.partition_point(|m| m.name() < d.name());
        self.members.insert(at, d);
    }

    /// A released member of this group's number that is not back already.
    fn check_number(&self, r: &Released) -> Result<()> {
        let err = |detail: String| {
            Err(Error::new(
                ErrorKind::InvalidInput,
                "rejoin",
                format!("group {} {}", self.number(), r.bdf),
            )
            .detail(detail))
        };
        if r.number != self.number() {
            return err(format!(
                "{} was released from IOMMU group {}",
                r.bdf, r.number
            ));
        }
        if self.members.iter().any(|m| m.name() == r.bdf) {
            return err(format!("{} is already a member of the group", r.bdf));
        }
        Ok(())
    }
}

impl<S: State> fmt::Debug for Group<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(&format!("Group<{}>", S::NAME))
            .field("number", &self.number())
            .field("members", &self.member_names())
            .finish()
    }
}
