//! Virtual IOMMUs (`IOMMU_VIOMMU_ALLOC`) and their virtual devices
//! (`IOMMU_VDEVICE_ALLOC`): what an accelerated vIOMMU gives its guest.
//!
//! A [`Viommu`] lives on a [`NestParent`] HWPT and holds it. A [`Vdevice`]
//! is one device as the guest's vIOMMU knows it (its virtual id, such as a
//! vSID or a vRID): it borrows its vIOMMU, so it cannot outlive it
//! (`ui-tests/compile-fail/vdevice_outlives_viommu`). It does not borrow the
//! device, which must still move (to a nested HWPT allocated on the
//! vIOMMU, [`Hwpt::alloc_nested_on`](crate::hwpt::Hwpt::alloc_nested_on))
//! while the vDEVICE lives; drop the vDEVICE before unbinding the device.
//!
//! ```no_run
//! use iommufd::hwpt::{Hwpt, NestParent};
//! use iommufd::viommu::{Viommu, ViommuKind};
//! # fn f(dev: &iommufd::Device<iommufd::BlockDma>, ioas: &iommufd::Ioas) -> iommufd::Result<()> {
//! let s2 = Hwpt::<NestParent>::alloc(dev, ioas)?;
//! let viommu = Viommu::alloc(dev, &s2, ViommuKind::ArmSmmuV3)?;
//! let vdev = viommu.alloc_vdevice(dev, 0x8)?; // the guest's stream id for it
//! # drop(vdev); Ok(()) }
//! ```

use crate::error::{Error, ErrorKind, Result};
use crate::hwpt::{Hwpt, HwptDevice, NestParent, Nested, Stage1};
use crate::iopf::FaultQueue;
use crate::Mapping;
use nix::errno::Errno;
use std::fmt;

/// A vIOMMU type (`IOMMU_VIOMMU_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViommuKind {
    /// ARM SMMUv3.
    ArmSmmuV3,
    /// The iommufd test driver's.
    #[cfg(feature = "iommufd-test-driver")]
    Selftest,
}

impl ViommuKind {
    fn number(self) -> u32 {
        match self {
            ViommuKind::ArmSmmuV3 => 1,
            #[cfg(feature = "iommufd-test-driver")]
            ViommuKind::Selftest => 0xdead_beef,
        }
    }
}

struct ViommuInner {
    parent: Hwpt<NestParent>,
    id: u32,
    /// Where its driver's page is in the iommufd's mmap space (offset,
    /// length), if it hands one out.
    page: Option<(u64, u64)>,
}

/// A hardware queue type (`IOMMU_HW_QUEUE_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HwQueueKind {
    /// NVIDIA Tegra241 CMDQV's virtual command queue (an extension of ARM
    /// SMMUv3).
    Tegra241Cmdqv,
    /// The iommufd test driver's.
    #[cfg(feature = "iommufd-test-driver")]
    Selftest,
}

impl HwQueueKind {
    fn number(self) -> u32 {
        match self {
            HwQueueKind::Tegra241Cmdqv => 1,
            #[cfg(feature = "iommufd-test-driver")]
            HwQueueKind::Selftest => 0xdead_beef,
        }
    }
}

/// A hardware queue of a vIOMMU (`IOMMU_HW_QUEUE_ALLOC`): a queue the
/// guest fills in its own memory and the IOMMU reads directly (a virtual
/// command queue), without a trap per command.
///
/// Its memory is a range of a [`Mapping`] in the vIOMMU's nest-parent IOAS,
/// which the kernel pins for it and will not unmap while it lives
/// (`EBUSY`): the queue borrows the mapping, so it cannot be unmapped or
/// dropped first (`ui-tests/compile-fail/hw_queue_memory_unmapped`).
/// Queues are made in ascending index from 0 and destroyed in descending
/// index (both existing drivers require it: the kernel refuses index 1
/// before 0 with `EIO`, and destroying 0 before 1 with `EBUSY`): the first
/// comes from [`Viommu::alloc_hw_queue`], each next from
/// [`HwQueue::alloc_next`] on the one before, which it borrows.
///
/// ```no_run
/// use iommufd::viommu::{HwQueueKind, Viommu};
/// # fn f(viommu: &Viommu, guest_ram: &iommufd::Mapping<iommufd::DmaBuffer>) -> iommufd::Result<()> {
/// // The guest's command queue: 4 KiB at offset 0x10000 of its RAM.
/// let q0 = viommu.alloc_hw_queue(HwQueueKind::Tegra241Cmdqv, guest_ram, 0x10000, 4096)?;
/// let q1 = q0.alloc_next(guest_ram, 0x11000, 4096)?;
/// # drop(q1); Ok(()) }
/// ```
pub struct HwQueue<'a> {
    viommu: &'a Viommu,
    kind: HwQueueKind,
    index: u32,
    id: u32,
}

impl fmt::Debug for HwQueue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HwQueue")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("index", &self.index)
            .field("viommu", &self.viommu.0.id)
            .finish()
    }
}

impl<'a> HwQueue<'a> {
    /// Its id in the iommufd.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Its index among the vIOMMU's queues of its kind.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Allocates the next queue of the same kind (index + 1), over
    /// `[offset, offset + len)` of `memory`. It borrows this one, which the
    /// kernel will not destroy first.
    ///
    /// # Errors
    /// As [`Viommu::alloc_hw_queue`]; `EINVAL` from the kernel past the
    /// driver's number of queues.
    pub fn alloc_next<'b, M>(
        &'b self,
        memory: &'b Mapping<M>,
        offset: u64,
        len: u64,
    ) -> Result<HwQueue<'b>> {
        self.viommu
            .hw_queue(self.kind, self.index + 1, memory, offset, len)
    }
}

impl Drop for HwQueue<'_> {
    fn drop(&mut self) {
        self.viommu.0.parent.ioas().iommufd().ctx().destroy(self.id);
    }
}

/// Driver data a vIOMMU takes at allocation ([`Viommu::alloc_with_data`]),
/// one variant per kind that takes any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViommuData {
    /// The test driver's (`struct iommu_viommu_selftest`): `in_data` comes
    /// back as [`ViommuReply::Selftest`]'s `out_data` and as the first word
    /// of the vIOMMU's page.
    #[cfg(feature = "iommufd-test-driver")]
    Selftest {
        /// What the driver echoes.
        in_data: u32,
    },
}

/// What a vIOMMU's driver answered to its [`ViommuData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViommuReply {
    /// The test driver's.
    #[cfg(feature = "iommufd-test-driver")]
    Selftest {
        /// The `in_data` it was given.
        out_data: u32,
    },
}

/// A vIOMMU's page, mapped into this process by [`Viommu::map_page`]:
/// what its driver hands out (the test driver's page; on some IOMMUs the
/// registers of a hardware command queue). Reached through volatile 32-bit
/// accesses only. It borrows the vIOMMU, which the kernel will not destroy
/// while the page is mapped (`EBUSY`), so it cannot outlive it
/// (`ui-tests/compile-fail/viommu_page_outlives_viommu`); dropping it
/// unmaps it.
pub struct ViommuPage<'v> {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    viommu: &'v Viommu,
}

impl fmt::Debug for ViommuPage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViommuPage")
            .field("viommu", &self.viommu.0.id)
            .field("len", &format_args!("{:#x}", self.len))
            .finish()
    }
}

impl ViommuPage<'_> {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a page is never empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where a 32-bit access at `offset` goes, if it is inside and aligned.
    fn word(&self, op: &'static str, offset: usize) -> Result<*mut u32> {
        if offset % 4 != 0 || offset.checked_add(4).is_none_or(|end| end > self.len) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                op,
                format!("vIOMMU {} page", self.viommu.0.id),
            )
            .detail(format!(
                "offset {offset:#x} is not a 32-bit word inside the {:#x}-byte page",
                self.len
            )));
        }
        Ok(self.ptr.as_ptr().wrapping_add(offset).cast())
    }

    /// Reads the 32-bit word at `offset` (volatile).
    ///
    /// # Errors
    /// An offset outside the page or not 4-aligned ([`ErrorKind::InvalidInput`]).
    pub fn read32(&self, offset: usize) -> Result<u32> {
        let p = self.word("read32", offset)?;
        // SAFETY: inside the live mapping, aligned (`word`); volatile, as
        // the driver's side may change it at any time.
        Ok(unsafe { p.read_volatile() })
    }

    /// Writes the 32-bit word at `offset` (volatile).
    ///
    /// # Errors
    /// As [`read32`](Self::read32).
    pub fn write32(&self, offset: usize, v: u32) -> Result<()> {
        let p = self.word("write32", offset)?;
        // SAFETY: as in `read32`; the mapping is writable (`Ctx::mmap`).
        unsafe { p.write_volatile(v) };
        Ok(())
    }
}

impl Drop for ViommuPage<'_> {
    fn drop(&mut self) {
        // SAFETY: the mapping `map_page` made; nothing borrows from it past
        // this value (the accessors copy).
        unsafe { crate::backend::munmap(self.ptr, self.len) }
    }
}

impl Drop for ViommuInner {
    fn drop(&mut self) {
        // Its vDEVICEs and vEVENTQs borrow a handle, and the nested HWPTs
        // on it hold one, so none is left.
        self.parent.ioas().iommufd().ctx().destroy(self.id);
    }
}

/// A virtual IOMMU on a nest parent HWPT, which it holds. A handle: clones
/// share it, nested HWPTs allocated on it hold one, and it is destroyed
/// with the last; its [`Vdevice`]s and [`Veventq`]s borrow it.
#[derive(Clone)]
pub struct Viommu(std::sync::Arc<ViommuInner>);

impl fmt::Debug for Viommu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Viommu")
            .field("id", &self.0.id)
            .field("parent", &self.0.parent.id())
            .finish()
    }
}

#[cold]
fn alloc_error(op: &'static str, object: String, e: Errno) -> Error {
    let err = Error::sys(op, object, e);
    match e {
        Errno::EOPNOTSUPP => err
            .kind_(ErrorKind::Unsupported)
            .detail("the IOMMU behind the device has no vIOMMU of this type"),
        Errno::ENOTTY => err
            .kind_(ErrorKind::Unsupported)
            .detail("no vIOMMU objects here: the legacy container path, or a kernel before 6.13"),
        _ => err,
    }
}

/// Explains a refused `IOMMU_HW_QUEUE_ALLOC` of `[iova, iova + len)`.
#[cold]
fn hw_queue_error(object: String, iova: u64, len: u64, e: Errno) -> Error {
    let err = Error::sys("IOMMU_HW_QUEUE_ALLOC", object, e);
    match e {
        Errno::EOPNOTSUPP => err
            .kind_(ErrorKind::Unsupported)
            .detail("the vIOMMU has no hardware queues of this kind"),
        Errno::ENOTTY => err.kind_(ErrorKind::Unsupported).detail(
            "no hardware queues here: the legacy container path, or a kernel before 6.17",
        ),
        Errno::EEXIST => err
            .kind_(ErrorKind::Overlap)
            .detail("the vIOMMU has a queue of this kind at this index already"),
        Errno::EINVAL => err.detail(format!(
            "the driver refused the queue: an index past its number of queues, or memory [{iova:#x}, +{len:#x}) it cannot take (its alignment or size limits)"
        )),
        _ => err,
    }
}

/// Nested HWPTs on a vIOMMU.
impl Hwpt<Nested> {
    /// Allocates a nested HWPT on a vIOMMU (`IOMMU_HWPT_ALLOC` with the
    /// vIOMMU as its parent): the guest's stage-1 under that vIOMMU, whose
    /// devices' events (vEVENTQ) then report through it. It holds the
    /// vIOMMU, and through it the nest parent.
    pub fn alloc_nested_on(
        dev: &impl HwptDevice,
        viommu: &Viommu,
        stage1: &Stage1,
    ) -> Result<Self> {
        Self::nested_on(dev, viommu, stage1, None, 0)
    }

    /// As [`alloc_nested_on`](Self::alloc_nested_on), and its devices'
    /// page requests go to `faults` (`IOMMU_HWPT_FAULT_ID_VALID`), which the
    /// HWPT holds: an accelerated vIOMMU's stage-1 with I/O page faults.
    pub fn alloc_nested_on_with_faults(
        dev: &impl HwptDevice,
        viommu: &Viommu,
        stage1: &Stage1,
        faults: &FaultQueue,
    ) -> Result<Self> {
        Self::nested_on(dev, viommu, stage1, Some(faults), 0)
    }

    /// [`alloc_nested_on`](Self::alloc_nested_on) with a fault queue and
    /// allocation `flags`.
    pub(crate) fn nested_on(
        dev: &impl HwptDevice,
        viommu: &Viommu,
        stage1: &Stage1,
        faults: Option<&FaultQueue>,
        flags: u32,
    ) -> Result<Self> {
        // The HWPT keeps the vIOMMU alive, erased: the HWPT file sits
        // below this one.
        let keep: std::sync::Arc<dyn std::any::Any + Send + Sync> = viommu.0.clone();
        let at = (viommu.id(), viommu.parent(), Some(keep));
        Self::nested_at(dev, at, stage1, faults, flags)
    }
}

impl Viommu {
    /// Allocates a vIOMMU of `kind` on `parent` for the IOMMU behind `dev`.
    ///
    /// # Errors
    /// A nest parent of another iommufd than `dev`'s is refused first
    /// ([`ErrorKind::InvalidInput`]); [`ErrorKind::Unsupported`] when the
    /// IOMMU has no such vIOMMU, on the legacy path, and before 6.13.
    #[doc(alias = "IOMMU_VIOMMU_ALLOC")]
    pub fn alloc<P: crate::hwpt::Parent>(
        dev: &impl HwptDevice,
        parent: &Hwpt<P>,
        kind: ViommuKind,
    ) -> Result<Viommu> {
        Self::create(dev, parent, kind, &mut [], |_| None)
    }

    /// `IOMMU_VIOMMU_ALLOC` of `kind` with driver data `data` (empty for
    /// none), after refusing a nest parent of another iommufd; `page` reads
    /// from the driver's answer where its page is, if it has one.
    fn create<P: crate::hwpt::Parent>(
        dev: &impl HwptDevice,
        parent: &Hwpt<P>,
        kind: ViommuKind,
        data: &mut [u8],
        page: impl FnOnce(&[u8]) -> Option<(u64, u64)>,
    ) -> Result<Viommu> {
        let (fd, dev_id, name) = dev.hwpt_dev();
        let object = || format!("{name} on HWPT {}", parent.id());
        crate::owner::same_iommufd(
            "IOMMU_VIOMMU_ALLOC",
            object,
            fd,
            &[(parent.ioas().iommufd(), "the nest parent")],
        )?;
        let id = fd
            .ctx()
            .viommu_alloc(kind.number(), dev_id, parent.id(), data)
            .map_err(|e| alloc_error("IOMMU_VIOMMU_ALLOC", object(), e))?;
        Ok(Viommu(std::sync::Arc::new(ViommuInner {
            parent: parent.as_parent(),
            id,
            page: page(data),
        })))
    }

    /// Allocates a vIOMMU with driver data (`IOMMU_VIOMMU_ALLOC` with
    /// `data_uptr`): its kind is the data's, and the driver's answer comes
    /// back with it. A driver that hands out a page says where, and
    /// [`map_page`](Self::map_page) maps it.
    ///
    /// ```no_run
    /// # #[cfg(feature = "iommufd-test-driver")]
    /// # fn f(dev: &iommufd::mock::MockDevice, ioas: &iommufd::Ioas) -> iommufd::Result<()> {
    /// use iommufd::hwpt::{Hwpt, NestParent};
    /// use iommufd::viommu::{Viommu, ViommuData};
    /// let s2 = Hwpt::<NestParent>::alloc(dev, ioas)?;
    /// let (viommu, reply) = Viommu::alloc_with_data(dev, &s2, ViommuData::Selftest { in_data: 0xbeef })?;
    /// let page = viommu.map_page()?;
    /// assert_eq!(page.read32(0)?, 0xbeef);
    /// # let _ = reply; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`alloc`](Self::alloc).
    #[doc(alias = "IOMMU_VIOMMU_ALLOC")]
    #[cfg_attr(not(feature = "iommufd-test-driver"), allow(unused_variables))]
    pub fn alloc_with_data<P: crate::hwpt::Parent>(
        dev: &impl HwptDevice,
        parent: &Hwpt<P>,
        data: ViommuData,
    ) -> Result<(Viommu, ViommuReply)> {
        match data {
            #[cfg(feature = "iommufd-test-driver")]
            ViommuData::Selftest { in_data } => {
                use crate::sys::IommuViommuSelftest as D;
                use std::mem::{offset_of, size_of};
                let word =
                    |b: &[u8], at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
                let dword =
                    |b: &[u8], at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
                let mut bytes = [0u8; size_of::<D>()];
                bytes[offset_of!(D, in_data)..][..4].copy_from_slice(&in_data.to_ne_bytes());
                let viommu = Self::create(dev, parent, ViommuKind::Selftest, &mut bytes, |b| {
                    let len = dword(b, offset_of!(D, out_mmap_length));
                    (len > 0).then(|| (dword(b, offset_of!(D, out_mmap_offset)), len))
                })?;
                let out_data = word(&bytes, offset_of!(D, out_data));
                Ok((viommu, ViommuReply::Selftest { out_data }))
            }
        }
    }

    /// Maps the page its driver handed out at allocation
    /// ([`alloc_with_data`](Self::alloc_with_data)) into this process
    /// (`mmap` of the iommufd at the offset and length the driver gave,
    /// the only ones it takes). See [`ViommuPage`].
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] for a vIOMMU whose driver handed out no
    /// page; from `mmap`.
    pub fn map_page(&self) -> Result<ViommuPage<'_>> {
        let object = || format!("vIOMMU {} page", self.0.id);
        let Some((offset, len)) = self.0.page else {
            return Err(Error::new(ErrorKind::Unsupported, "mmap", object())
                .detail("its driver handed out no page (a vIOMMU allocated without driver data, or of a kind that has none)"));
        };
        let len = usize::try_from(len).map_err(|_| {
            Error::new(ErrorKind::InvalidInput, "mmap", object()).detail(format!(
                "the driver's length {len:#x} does not fit this process"
            ))
        })?;
        let ptr = self
            .0
            .parent
            .ioas()
            .iommufd()
            .ctx()
            .mmap(offset, len)
            .map_err(|e| Error::sys("mmap", object(), e))?;
        Ok(ViommuPage {
            ptr,
            len,
            viommu: self,
        })
    }

    /// Allocates its first hardware queue (index 0) of `kind`, over the
    /// `len` bytes at `offset` of `memory`, a mapping in this vIOMMU's
    /// nest-parent IOAS (the guest's RAM). See [`HwQueue`].
    ///
    /// # Errors
    /// A mapping of another IOAS, or a range not inside it or empty
    /// ([`ErrorKind::InvalidInput`], before the ioctl);
    /// [`ErrorKind::Unsupported`] when the vIOMMU has no such queues (or
    /// before Linux 6.17); `EEXIST` when the index is taken; the driver's
    /// own limits (alignment, size) as `EINVAL`.
    #[doc(alias = "IOMMU_HW_QUEUE_ALLOC")]
    pub fn alloc_hw_queue<'a, M>(
        &'a self,
        kind: HwQueueKind,
        memory: &'a Mapping<M>,
        offset: u64,
        len: u64,
    ) -> Result<HwQueue<'a>> {
        self.hw_queue(kind, 0, memory, offset, len)
    }

    fn hw_queue<'a, M>(
        &'a self,
        kind: HwQueueKind,
        index: u32,
        memory: &'a Mapping<M>,
        offset: u64,
        len: u64,
    ) -> Result<HwQueue<'a>> {
        let parent = self.0.parent.ioas();
        let object = || format!("vIOMMU {} queue {index}", self.0.id);
        memory.check_part("IOMMU_HW_QUEUE_ALLOC", object, offset, len)?;
        if memory.ioas() != parent {
            return Err(
                Error::new(ErrorKind::InvalidInput, "IOMMU_HW_QUEUE_ALLOC", object()).detail(
                    format!(
                    "its memory is mapped in IOAS {}, not in IOAS {} of the vIOMMU's nest parent",
                    memory.ioas().id(),
                    parent.id()
                ),
                ),
            );
        }
        let iova = memory.iova() + offset;
        match parent
            .iommufd()
            .ctx()
            .hw_queue_alloc(self.0.id, kind.number(), index, iova, len)
        {
            Ok(id) => Ok(HwQueue {
                viommu: self,
                kind,
                index,
                id,
            }),
            Err(e) => Err(hw_queue_error(object(), iova, len, e)),
        }
    }

    /// Its id in the iommufd.
    pub fn id(&self) -> u32 {
        self.0.id
    }

    /// The nest parent it lives on.
    pub fn parent(&self) -> &Hwpt<NestParent> {
        &self.0.parent
    }

    /// Invalidates what the vIOMMU caches per device, as the guest asked
    /// (`IOMMU_HWPT_INVALIDATE` on the vIOMMU): requests name devices by
    /// their virtual ids ([`Vdevice::virt_id`]). All of one type per call.
    /// Returns how many the kernel handled.
    ///
    /// # Errors
    /// No request, or requests of two types ([`ErrorKind::InvalidInput`]);
    /// from the kernel (a virtual id no vDEVICE has: `EINVAL`), with how
    /// many requests were handled before the refused one.
    ///
    /// ```no_run
    /// # fn f(viommu: &iommufd::viommu::Viommu, cmd: [u64; 2]) -> iommufd::Result<()> {
    /// use iommufd::viommu::ViommuInvalidation;
    /// // An SMMUv3 command the guest wrote into its command queue.
    /// viommu.invalidate(&[ViommuInvalidation::ArmSmmuV3 { cmd }])?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "IOMMU_HWPT_INVALIDATE")]
    pub fn invalidate(&self, requests: &[ViommuInvalidation]) -> Result<u32> {
        let id = self.0.id;
        crate::hwpt::invalidate_on(
            self.0.parent.ioas().iommufd(),
            id,
            &|| format!("vIOMMU {id}"),
            requests,
        )
    }

    /// Tells the vIOMMU that `dev` is, to the guest, device `virt_id`
    /// (`IOMMU_VDEVICE_ALLOC`). The vDEVICE borrows the vIOMMU; drop it
    /// before the device is unbound.
    ///
    /// # Errors
    /// A device bound to another iommufd than the vIOMMU's is refused first
    /// ([`ErrorKind::InvalidInput`]); from the kernel: `EEXIST` when the
    /// virtual id or the device is taken.
    #[doc(alias = "IOMMU_VDEVICE_ALLOC")]
    pub fn alloc_vdevice<D: HwptDevice>(&self, dev: &D, virt_id: u64) -> Result<Vdevice<'_>> {
        let (fd, dev_id, name) = dev.hwpt_dev();
        crate::owner::same_iommufd(
            "IOMMU_VDEVICE_ALLOC",
            || format!("{name} as {virt_id:#x} on vIOMMU {}", self.0.id),
            fd,
            &[(self.0.parent.ioas().iommufd(), "the vIOMMU")],
        )?;
        match fd.ctx().vdevice_alloc(self.0.id, dev_id, virt_id) {
            Ok(id) => Ok(Vdevice {
                viommu: self,
                id,
                virt_id,
            }),
            Err(e) => Err(alloc_error(
                "IOMMU_VDEVICE_ALLOC",
                format!("{name} as {virt_id:#x} on vIOMMU {}", self.0.id),
                e,
            )),
        }
    }
}

/// One cache invalidation request for a vIOMMU
/// (`IOMMU_VIOMMU_INVALIDATE_DATA_*`): the per-device caches of the
/// vIOMMU's hardware, devices named by their virtual ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViommuInvalidation {
    /// `struct iommu_viommu_arm_smmuv3_invalidate`: one 128-bit SMMUv3
    /// command-queue entry, as the guest wrote it (little-endian words).
    ArmSmmuV3 {
        /// The command.
        cmd: [u64; 2],
    },
    /// The iommufd test driver's (`struct iommu_viommu_invalidate_selftest`).
    #[cfg(feature = "iommufd-test-driver")]
    Selftest {
        /// `IOMMU_TEST_INVALIDATE_FLAG_ALL` (1) or 0.
        flags: u32,
        /// The device's virtual id.
        vdev_id: u32,
        /// The mock device cache entry.
        cache_id: u32,
    },
}

impl crate::hwpt::Request for ViommuInvalidation {
    fn layout(&self) -> (u32, usize) {
        match self {
            ViommuInvalidation::ArmSmmuV3 { .. } => (1, 16),
            #[cfg(feature = "iommufd-test-driver")]
            ViommuInvalidation::Selftest { .. } => (0xdead_beef, 12),
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            ViommuInvalidation::ArmSmmuV3 { cmd } => {
                for w in cmd {
                    out.extend_from_slice(&w.to_le_bytes());
                }
            }
            #[cfg(feature = "iommufd-test-driver")]
            ViommuInvalidation::Selftest {
                flags,
                vdev_id,
                cache_id,
            } => {
                for w in [flags, vdev_id, cache_id] {
                    out.extend_from_slice(&w.to_ne_bytes());
                }
            }
        }
    }
}

/// A vEVENTQ type (`IOMMU_VEVENTQ_TYPE_*`) and the size of its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VeventqKind {
    /// ARM SMMUv3 events (`struct iommu_vevent_arm_smmuv3`, 32 bytes).
    ArmSmmuV3,
    /// The iommufd test driver's (`struct iommu_viommu_event_selftest`, 4 bytes).
    #[cfg(feature = "iommufd-test-driver")]
    Selftest,
}

impl VeventqKind {
    fn number(self) -> u32 {
        match self {
            VeventqKind::ArmSmmuV3 => 1,
            #[cfg(feature = "iommufd-test-driver")]
            VeventqKind::Selftest => 0xbeef_beef,
        }
    }
    fn event_len(self) -> usize {
        match self {
            VeventqKind::ArmSmmuV3 => 32,
            #[cfg(feature = "iommufd-test-driver")]
            VeventqKind::Selftest => 4,
        }
    }
}

impl Viommu {
    /// Allocates a vEVENTQ of `kind` holding up to `depth` events
    /// (`IOMMU_VEVENTQ_ALLOC`): the events the IOMMU reports for this
    /// vIOMMU's devices, for the VMM to forward to its guest. It borrows
    /// the vIOMMU.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] when the IOMMU has no such queue, on the
    /// legacy path and before 6.15; `EEXIST` for a second queue of a type.
    #[doc(alias = "IOMMU_VEVENTQ_ALLOC")]
    pub fn alloc_veventq(&self, kind: VeventqKind, depth: u32) -> Result<Veventq<'_>> {
        let ctx = self.0.parent.ioas().iommufd().ctx();
        match ctx.veventq_alloc(self.0.id, kind.number(), depth) {
            Ok((id, fd)) => Ok(Veventq {
                viommu: self,
                id,
                fd: std::mem::ManuallyDrop::new(fd),
                kind,
            }),
            Err(e) => Err(alloc_error(
                "IOMMU_VEVENTQ_ALLOC",
                format!("vIOMMU {}", self.0.id),
                e,
            )),
        }
    }
}

/// A virtual event queue of a vIOMMU: an fd to poll and typed events.
pub struct Veventq<'v> {
    viommu: &'v Viommu,
    id: u32,
    /// Closed in `drop` before the object is destroyed: the kernel refuses
    /// `IOMMU_DESTROY` (`EBUSY`) while the fd holds its reference.
    fd: std::mem::ManuallyDrop<std::os::fd::OwnedFd>,
    kind: VeventqKind,
}

impl fmt::Debug for Veventq<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Veventq")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("viommu", &self.viommu.0.id)
            .finish()
    }
}

/// One virtual event (`struct iommufd_vevent_header` and its data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vevent {
    /// The queue's running sequence number of this event.
    pub sequence: u32,
    /// Events were lost before this one (the queue was full); no data.
    pub lost_before: bool,
    /// The event, as the vIOMMU type defines it.
    pub data: Vec<u8>,
}

impl Veventq<'_> {
    /// Its id in the iommufd.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Reads the events queued now (blocks while there are none: poll
    /// [`as_fd`](std::os::fd::AsFd::as_fd) first).
    pub fn read(&self) -> Result<Vec<Vevent>> {
        let mut buf = vec![0u8; 64 * (8 + self.kind.event_len())];
        let n = nix::unistd::read(&*self.fd, &mut buf)
            .map_err(|e| Error::sys("read", format!("vEVENTQ {}", self.id), e))?;
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= n {
            let flags = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
            let sequence = u32::from_ne_bytes(buf[at + 4..at + 8].try_into().expect("4 bytes"));
            at += 8;
            let lost = flags & 1 != 0;
            let len = if lost {
                0
            } else {
                self.kind.event_len().min(n - at)
            };
            out.push(Vevent {
                sequence,
                lost_before: lost,
                data: buf[at..at + len].to_vec(),
            });
            at += len;
        }
        Ok(out)
    }
}

impl std::os::fd::AsFd for Veventq<'_> {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&*self.fd)
    }
}

impl Drop for Veventq<'_> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once, and nothing uses `fd` after it.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.fd) };
        // The fd, closed just above, held the kernel's other reference:
        // destroyed before, the queue stayed (`EBUSY`) and a new queue of
        // its type was `EEXIST` until the iommufd closed.
        self.viommu.0.parent.ioas().iommufd().ctx().destroy(self.id);
    }
}

/// A device as a vIOMMU's guest knows it; borrows the vIOMMU.
pub struct Vdevice<'v> {
    viommu: &'v Viommu,
    id: u32,
    virt_id: u64,
}

impl fmt::Debug for Vdevice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vdevice")
            .field("id", &self.id)
            .field("virt_id", &format_args!("{:#x}", self.virt_id))
            .field("viommu", &self.viommu.0.id)
            .finish()
    }
}

impl Vdevice<'_> {
    /// Its id in the iommufd.
    pub fn id(&self) -> u32 {
        self.id
    }
    /// The id the guest knows the device by.
    pub fn virt_id(&self) -> u64 {
        self.virt_id
    }
}

impl Drop for Vdevice<'_> {
    fn drop(&mut self) {
        self.viommu.0.parent.ioas().iommufd().ctx().destroy(self.id);
    }
}
