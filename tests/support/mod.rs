//! Test support for the guest tests: the harness topology by role, and a small
//! driver for QEMU's `edu` device. Shared with `examples/demo.rs`.
#![allow(dead_code)]

pub mod fault;
pub mod raw;

use iommufd::{Bound, Device, Mmio};
use std::path::Path;
use std::time::{Duration, Instant};

/// QEMU `edu`: vendor 0x1234, device 0x11e8.
pub const EDU_ID: u32 = 0x010000ed;
/// The device-side DMA buffer (4 KiB) in edu's address space.
pub const EDU_BUF: u64 = 0x40000;
/// edu's DMA mask is 28 bits: every IOVA must stay below this.
pub const EDU_DMA_LIMIT: u64 = 1 << 28;

const REG_ID: u64 = 0x00;
const REG_LIVENESS: u64 = 0x04;
const REG_IRQ_STATUS: u64 = 0x24;
const REG_IRQ_RAISE: u64 = 0x60;
const REG_IRQ_ACK: u64 = 0x64;
const REG_DMA_SRC: u64 = 0x80;
const REG_DMA_DST: u64 = 0x88;
const REG_DMA_COUNT: u64 = 0x90;
const REG_DMA_CMD: u64 = 0x98;
const DMA_START: u64 = 1;
const DMA_TO_RAM: u64 = 2;

/// The guest's devices, found by role (never by a hard-coded BDF).
#[derive(Debug)]
pub struct Topology {
    /// An edu alone in its IOMMU group.
    pub singleton: String,
    /// Every edu alone in its group (the bench topology adds 16 more).
    pub singletons: Vec<String>,
    /// The group holding two edus (and their bridge), and the two edus.
    pub pair_group: u32,
    pub pair: [String; 2],
    /// The group whose edu shares it with a device on a DMA-capable driver.
    pub nonviable_group: u32,
    pub nonviable_edu: String,
    pub nonviable_other: String,
    /// An edu on a PCIe root port without hotplug: a secondary bus reset.
    pub bus_reset: Option<String>,
    /// An edu on a hotplug-capable PCIe root port (QMP `device_del`);
    /// `None` once a test unplugged it.
    pub hotplug: Option<String>,
    /// The NVMe controller (on vfio-pci).
    pub nvme: Option<String>,
    /// The SR-IOV PF (igb, on vfio-pci).
    pub sriov_pf: Option<String>,
}

/// Whether `bdf` sits behind a PCIe root port (not on the root bus, not
/// behind a conventional bridge): its parent in sysfs is a PCIe port.
fn behind_root_port(bdf: &str) -> bool {
    let Ok(dev) = std::fs::canonicalize(Path::new("/sys/bus/pci/devices").join(bdf)) else {
        return false;
    };
    let parent = dev.parent().unwrap();
    std::fs::read_link(parent.join("driver")).is_ok_and(|d| d.ends_with("pcieport"))
}

/// Whether the kernel registered a hotplug slot for `bdf` (pciehp).
fn hotplug_slot(bdf: &str) -> bool {
    // A slot's address is the device's, without the function: "0000:04:00".
    let Some((slot_addr, _)) = bdf.rsplit_once('.') else {
        return false;
    };
    std::fs::read_dir("/sys/bus/pci/slots").is_ok_and(|d| {
        d.flatten()
            .any(|s| read(&s.path().join("address")) == slot_addr)
    })
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn is_edu(bdf: &str) -> bool {
    let d = Path::new("/sys/bus/pci/devices").join(bdf);
    read(&d.join("vendor")) == "0x1234" && read(&d.join("device")) == "0x11e8"
}

impl Topology {
    pub fn discover() -> Topology {
        let mut singletons = Vec::new();
        let (mut bus_reset, mut hotplug, mut nvme, mut sriov_pf) = (None, None, None, None);
        let mut pair = None;
        let mut nonviable = None;
        for g in iommufd::sysfs::groups(Path::new("/sys")).expect("IOMMU groups") {
            let m = iommufd::sysfs::group_members(Path::new("/sys"), g).unwrap();
            let edus: Vec<String> = m
                .iter()
                .filter(|d| is_edu(&d.bdf))
                .map(|d| d.bdf.clone())
                .collect();
            if let [only] = &m[..] {
                let d = Path::new("/sys/bus/pci/devices").join(&only.bdf);
                if read(&d.join("class")) == "0x010802" {
                    nvme = Some(only.bdf.clone());
                    continue;
                }
                if read(&d.join("vendor")) == "0x8086" && read(&d.join("device")) == "0x10c9" {
                    sriov_pf = Some(only.bdf.clone());
                    continue;
                }
            }
            match edus.len() {
                1 if m.len() == 1 && behind_root_port(&edus[0]) => {
                    if hotplug_slot(&edus[0]) {
                        hotplug = Some(edus[0].clone());
                    } else {
                        bus_reset = Some(edus[0].clone());
                    }
                }
                1 if m.len() == 1 => singletons.push(edus[0].clone()),
                2 => pair = Some((g, [edus[0].clone(), edus[1].clone()])),
                1 => {
                    if let Some(other) = m.iter().find(|d| !d.is_dma_safe()) {
                        nonviable = Some((g, edus[0].clone(), other.bdf.clone()));
                    }
                }
                _ => {}
            }
        }
        let (pair_group, pair) = pair.expect("no group with two edus (pair)");
        let (nonviable_group, nonviable_edu, nonviable_other) =
            nonviable.expect("no non-viable group");
        singletons.sort();
        Topology {
            singleton: singletons.first().expect("no singleton edu").clone(),
            singletons,
            pair_group,
            pair,
            nonviable_group,
            nonviable_edu,
            nonviable_other,
            bus_reset,
            hotplug,
            nvme,
            sriov_pf,
        }
    }
}

/// A driver for one edu, over a bound device whose BAR0 is mapped.
pub struct Edu<'d> {
    bar: Mmio<'d>,
}

impl<'d> Edu<'d> {
    /// Maps BAR0 (if needed) and turns on memory space + bus master in the
    /// PCI command register, without which DMA silently goes nowhere.
    pub fn setup<S: Bound>(dev: &mut Device<S>) -> iommufd::Result<()> {
        dev.map_bar(0)?;
        Edu::enable(dev)
    }

    /// Memory space + bus master on in the PCI command register (for a
    /// group member, whose BAR0 is mapped with `Group::map_bar`).
    pub fn enable<S: Bound>(dev: &Device<S>) -> iommufd::Result<()> {
        let mut cmd = [0u8; 2];
        dev.config_read(4, &mut cmd)?;
        let v = u16::from_le_bytes(cmd) | 0x6;
        dev.config_write(4, &v.to_le_bytes())
    }

    pub fn new<S: Bound>(dev: &'d Device<S>) -> Edu<'d> {
        let bar = dev.mmio(0).expect("BAR0 mapped by Edu::setup");
        assert_eq!(bar.read32(REG_ID).unwrap(), EDU_ID, "not an edu");
        Edu { bar }
    }

    pub fn liveness(&self, v: u32) -> u32 {
        self.bar.write32(REG_LIVENESS, v).unwrap();
        self.bar.read32(REG_LIVENESS).unwrap()
    }

    /// DMA `len` bytes from RAM at `iova` into the device buffer.
    pub fn read_from_ram(&self, iova: u64, len: u64) {
        edu_dma(&self.bar, iova, EDU_BUF, len, 0);
    }

    /// DMA `len` bytes from the device buffer to RAM at `iova`.
    pub fn write_to_ram(&self, iova: u64, len: u64) {
        edu_dma(&self.bar, EDU_BUF, iova, len, DMA_TO_RAM);
    }

    /// Raises an interrupt with `status` (the interrupt status register).
    pub fn raise_irq(&self, status: u32) {
        self.bar.write32(REG_IRQ_RAISE, status).unwrap();
    }

    pub fn irq_status(&self) -> u32 {
        self.bar.read32(REG_IRQ_STATUS).unwrap()
    }

    pub fn ack_irq(&self, status: u32) {
        self.bar.write32(REG_IRQ_ACK, status).unwrap();
    }
}

/// Member `i` of a bound group ready for edu DMA: BAR0 mapped, memory
/// space and bus master on.
pub fn edu_member<S: Bound>(g: &mut iommufd::Group<S>, i: usize) {
    g.map_bar(i, 0).unwrap();
    Edu::enable(g.member(i).unwrap()).unwrap();
}

/// Every member of `g` ready for edu DMA (see [`edu_member`]).
pub fn edu_members<S: Bound>(g: &mut iommufd::Group<S>) {
    for i in 0..g.len() {
        edu_member(g, i);
    }
}

/// The edu registers a DMA needs, through the crate's `Mmio` or a raw mmap.
pub trait EduRegs {
    fn read32(&self, off: u64) -> u32;
    fn write64(&self, off: u64, v: u64);
}

impl EduRegs for Mmio<'_> {
    fn read32(&self, off: u64) -> u32 {
        Mmio::read32(self, off).unwrap()
    }
    fn write64(&self, off: u64, v: u64) {
        Mmio::write64(self, off, v).unwrap()
    }
}

/// One edu DMA of `len` bytes, `src` to `dst` (device addresses), waited for.
fn edu_dma(bar: &impl EduRegs, src: u64, dst: u64, len: u64, cmd: u64) {
    let ram = if cmd & DMA_TO_RAM != 0 { dst } else { src };
    assert!(ram + len <= EDU_DMA_LIMIT);
    bar.write64(REG_DMA_SRC, src);
    bar.write64(REG_DMA_DST, dst);
    bar.write64(REG_DMA_COUNT, len);
    bar.write64(REG_DMA_CMD, cmd | DMA_START);
    let start = Instant::now();
    while bar.read32(REG_DMA_CMD) & 1 != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "edu DMA did not complete"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// An edu driven through raw syscalls on a device fd bound outside the
/// crate: BAR0 mmapped, memory space and bus master on through a `pwrite`
/// of the config region. For the raw twins of the fault sweeps.
pub struct RawEdu {
    bar: memmap2::MmapRaw,
}

impl RawEdu {
    pub fn new(dev: &std::os::fd::OwnedFd) -> RawEdu {
        use std::os::fd::AsRawFd;
        let (size, offset) = raw::region(dev, 0).unwrap();
        let bar = memmap2::MmapOptions::new()
            .offset(offset)
            .len(size as usize)
            .map_raw(dev.as_raw_fd())
            .unwrap();
        let (_, config) = raw::region(dev, 7).unwrap();
        let mut cmd = [0u8; 2];
        nix::sys::uio::pread(dev, &mut cmd, config as i64 + 4).unwrap();
        let cmd = (u16::from_le_bytes(cmd) | 0x6).to_le_bytes();
        nix::sys::uio::pwrite(dev, &cmd, config as i64 + 4).unwrap();
        RawEdu { bar }
    }

    pub fn read_from_ram(&self, iova: u64, len: u64) {
        edu_dma(self, iova, EDU_BUF, len, 0);
    }

    pub fn write_to_ram(&self, iova: u64, len: u64) {
        edu_dma(self, EDU_BUF, iova, len, DMA_TO_RAM);
    }
}

impl EduRegs for RawEdu {
    fn read32(&self, off: u64) -> u32 {
        // SAFETY: BAR0 is 1 MiB and the edu registers used are below 0x100,
        // 4-byte aligned; the mapping lives as long as `self`.
        unsafe {
            self.bar
                .as_ptr()
                .add(off as usize)
                .cast::<u32>()
                .read_volatile()
        }
    }
    fn write64(&self, off: u64, v: u64) {
        // SAFETY: as in `read32`, 8-byte aligned.
        unsafe {
            self.bar
                .as_mut_ptr()
                .add(off as usize)
                .cast::<u64>()
                .write_volatile(v)
        }
    }
}

/// Opens `path` read-write, as a VMM's privileged helper would.
pub fn open_rw(path: impl AsRef<Path>) -> std::os::fd::OwnedFd {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
        .into()
}

/// The VFIO device cdev path of `bdf`.
pub fn cdev_of(bdf: &str) -> String {
    let n = iommufd::sysfs::cdev_name(Path::new("/sys"), bdf).unwrap();
    format!("/dev/vfio/devices/{n}")
}

/// One member of a multi-device group as a lone `Device`, past the group
/// check, to show what the kernel itself answers (which `Group` makes
/// unrepresentable). Test-only.
pub fn raw_member(bdf: &str) -> Device<iommufd::Unbound> {
    let f = open_rw(cdev_of(bdf));
    // SAFETY: deliberately outside the contract (the device shares its
    // group): the callers only observe the kernel refusing a second iommufd,
    // a second IOAS or a non-viable group, and never rely on this device's
    // type to say where its DMA goes.
    unsafe { Device::from_fd_unchecked(f) }
}

/// An instance of the kernel's `mtty` sample mdev (no PCI enable on first
/// open), removed on drop.
pub struct Mtty {
    pub uuid: String,
}

impl Mtty {
    pub fn create() -> Mtty {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let uuid = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            std::process::id(),
            t.subsec_nanos() & 0xffff,
            t.as_secs() & 0xfff,
            (t.subsec_nanos() >> 16) & 0xfff,
            t.as_nanos() & 0xffff_ffff_ffff
        );
        std::fs::write(
            "/sys/class/mdev_bus/mtty/mdev_supported_types/mtty-1/create",
            &uuid,
        )
        .expect("create an mtty mdev (CONFIG_SAMPLE_VFIO_MDEV_MTTY)");
        Mtty { uuid }
    }

    /// Its VFIO device cdev, `/dev/vfio/devices/vfioN`.
    pub fn cdev(&self) -> String {
        let dir = format!("/sys/bus/mdev/devices/{}/vfio-dev", self.uuid);
        let n = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .find_map(|e| e.file_name().into_string().ok())
            .expect("mdev cdev");
        format!("/dev/vfio/devices/{n}")
    }
}

impl Drop for Mtty {
    fn drop(&mut self) {
        let _ = std::fs::write(format!("/sys/bus/mdev/devices/{}/remove", self.uuid), "1");
    }
}

/// A memfd of `len` bytes (guest RAM, as a VMM that wants live update or
/// `IOMMU_IOAS_MAP_FILE` makes it).
pub fn memfd(len: usize) -> std::fs::File {
    let flags = nix::sys::memfd::MFdFlags::MFD_CLOEXEC;
    let fd = nix::sys::memfd::memfd_create(c"guest-ram", flags).unwrap();
    let f = std::fs::File::from(fd);
    f.set_len(len as u64).unwrap();
    f
}

/// The singleton edu bound to `fd`, BAR0 mapped and bus master on.
pub fn bound_singleton(fd: &iommufd::Iommufd) -> Device<iommufd::BlockDma> {
    let mut dev = Device::open(&Topology::discover().singleton)
        .expect("open the singleton edu")
        .bind(fd)
        .expect("bind the singleton edu");
    Edu::setup(&mut dev).expect("edu setup");
    dev
}

/// The edu alone on a PCIe root port (role bus-reset), bound to `fd`, set up
/// (memory decoding and bus master on): a second singleton edu.
pub fn bound_second_singleton(fd: &iommufd::Iommufd) -> Device<iommufd::BlockDma> {
    let bdf = Topology::discover()
        .bus_reset
        .expect("a second singleton edu (the bus-reset one)");
    let mut dev = Device::open(&bdf)
        .expect("open the second edu")
        .bind(fd)
        .expect("bind the second edu");
    Edu::setup(&mut dev).expect("edu setup");
    dev
}

/// A 4 KiB DMA buffer starting with `data`.
pub fn buffer_with(data: &[u8]) -> iommufd::DmaBuffer {
    let mut b = iommufd::DmaBuffer::new(4096).unwrap();
    b.as_mut_slice()[..data.len()].copy_from_slice(data);
    b
}

/// Maps a page holding `msg` at `src` (device-readable) and `dst_len` zeroed
/// bytes at `dst` (device-writable) in `ioas`.
pub fn map_src_dst(
    ioas: &iommufd::Ioas,
    msg: &[u8],
    src: iommufd::Iova,
    dst: iommufd::Iova,
    dst_len: usize,
) -> (
    iommufd::Mapping<iommufd::DmaBuffer>,
    iommufd::Mapping<iommufd::DmaBuffer>,
) {
    use iommufd::Access;
    let src = ioas.map(buffer_with(msg), src, Access::READ).unwrap();
    let dst = ioas
        .map(
            iommufd::DmaBuffer::new(dst_len).unwrap(),
            dst,
            Access::WRITE,
        )
        .unwrap();
    (src, dst)
}

/// Maps `msg` at `src` and an empty page at `dst` in `ioas`, has the edu copy
/// RAM → device → RAM, and returns what landed at `dst`.
pub fn round_trip<S: Bound>(
    dev: &Device<S>,
    ioas: &iommufd::Ioas,
    msg: &[u8],
    src: iommufd::Iova,
    dst: iommufd::Iova,
) -> Vec<u8> {
    let (src, dst) = map_src_dst(ioas, msg, src, dst, 4096);
    let edu = Edu::new(dev);
    edu.read_from_ram(src.iova(), msg.len() as u64);
    edu.write_to_ram(dst.iova(), msg.len() as u64);
    let mut out = vec![0u8; msg.len()];
    dst.read_bytes(0, &mut out).unwrap();
    out
}

/// This process's pinned memory (`VmPin` of `/proc/self/status`), in kB:
/// where the kernel charges an iommufd's pinned pages in `MM` accounting
/// and where `IOMMU_IOAS_CHANGE_PROCESS` moves them.
#[allow(dead_code)]
pub fn vm_pin_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmPin:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
