//! What a hostile caller tried against the public API, in safe code, and
//! what must happen instead: a name that once reached a device never reaches
//! another one later, and a safe config write never lets an MMIO access kill
//! the process.

mod support;

use iommufd::{pci, Device, ErrorKind, Group, Iommufd};
use std::path::{Path, PathBuf};
use support::{cdev_of, Edu, Topology, EDU_ID};

/// Renames `from` to `to` for as long as it lives, then back: a `vfioN`
/// node renumbered, as a hot-unplug and replug would.
struct Renamed(PathBuf, PathBuf);

impl Renamed {
    fn new(from: impl AsRef<Path>, to: impl AsRef<Path>) -> Renamed {
        let (from, to) = (from.as_ref().to_path_buf(), to.as_ref().to_path_buf());
        std::fs::rename(&from, &to).unwrap_or_else(|e| panic!("rename {from:?} {to:?}: {e}"));
        Renamed(from, to)
    }
}

impl Drop for Renamed {
    fn drop(&mut self) {
        std::fs::rename(&self.1, &self.0).unwrap();
    }
}

/// Points the symlink `link` at `target`.
fn point(link: &Path, target: &str) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// The pair group, bound to a fresh iommufd and attached: it works only if
/// no one else holds either member.
fn pair_is_free(t: &Topology) {
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let g = Group::open(t.pair_group)
        .unwrap()
        .bind(&fd)
        .expect("no one holds the pair group")
        .attach(&ioas)
        .unwrap();
    assert_eq!(g.len(), 2);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn unbind_never_reopens_another_device_through_a_retargeted_path() {
    let t = Topology::discover();
    let fd = Iommufd::open().unwrap();
    let link = Path::new("/run/tmp/hardening-cdev");
    point(link, &cdev_of(&t.singleton));
    let dev = Device::open_cdev(link).unwrap().bind(&fd).unwrap();
    assert_eq!(dev.name(), t.singleton);
    let id = dev.dev_id();

    // The link now names a member of the pair group, then a device that is
    // not VFIO at all: the reopen refuses both, and the device stays bound.
    let mut dev = dev;
    for (target, names) in [
        (cdev_of(&t.pair[0]), t.pair[0].as_str()),
        ("/dev/null".to_string(), "1:3"),
    ] {
        point(link, &target);
        let e = dev.unbind().unwrap_err();
        let msg = e.error().to_string();
        assert_eq!(e.error().kind(), ErrorKind::DeviceChanged, "{msg}");
        assert!(msg.contains(names) && msg.contains("stays bound"), "{msg}");
        assert!(msg.contains("Device::open"), "the fix is named: {msg}");
        dev = e.into_inner();
        assert_eq!(dev.name(), t.singleton);
        assert_eq!(dev.dev_id(), id, "the same binding");
        dev.info().expect("still bound and usable");
        // No group member was opened, let alone typed as a lone device.
        pair_is_free(&t);
    }

    // Pointed back at the device it was opened as, the reopen works.
    point(link, &cdev_of(&t.singleton));
    let dev = dev.unbind().unwrap();
    let dev = dev.bind(&fd).expect("the reopened fd is the singleton's");
    dev.info().unwrap();
    drop(dev);
    let _ = std::fs::remove_file(link);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn unbind_never_reopens_another_device_after_a_renumbering() {
    let t = Topology::discover();
    let fd = Iommufd::open().unwrap();
    let own = cdev_of(&t.singleton);
    let dev = Device::open(&t.singleton).unwrap().bind(&fd).unwrap();
    {
        // The singleton's vfioN now names a pair member's device.
        let _away = Renamed::new(&own, format!("{own}.away"));
        let _moved = Renamed::new(cdev_of(&t.pair[1]), &own);
        let e = dev.unbind().unwrap_err();
        assert_eq!(e.error().kind(), ErrorKind::DeviceChanged, "{}", e.error());
        let dev = e.into_inner();
        dev.info().expect("still bound");
        drop(dev);
    }
    pair_is_free(&t);

    // A group's members reopen their own cdevs by name too: swapped
    // names never hand one member the other's fd.
    let g = Group::open(t.pair_group).unwrap().bind(&fd).unwrap();
    {
        let (a, b) = (cdev_of(&t.pair[0]), cdev_of(&t.pair[1]));
        let _a = Renamed::new(&a, format!("{a}.swap"));
        let _b = Renamed::new(&b, &a);
        let _c = Renamed::new(format!("{a}.swap"), &b);
        let e = g.unbind().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DeviceChanged, "{e}");
        assert!(e.to_string().contains(&t.pair[0]), "{e}");
    }
    pair_is_free(&t);
    let dev = Device::open(&t.singleton).unwrap().bind(&fd).unwrap();
    dev.unbind()
        .expect("names restored: the reopen works again");
}

/// The child's half of `memory_decoding_off_never_raises_sigbus`: every
/// step that could fault, in safe code.
fn decoding_child() {
    let t = Topology::discover();
    let fd = Iommufd::open().unwrap();
    let mut dev = Device::open(&t.singleton).unwrap().bind(&fd).unwrap();
    let command = |dev: &Device<iommufd::BlockDma>| {
        let mut b = [0u8; 2];
        dev.config_read(4, &mut b).unwrap();
        u16::from_le_bytes(b)
    };
    // The kernel fact the crate relies on: decoding is on once bound.
    assert_ne!(command(&dev) & 2, 0, "memory decoding off right after bind");
    Edu::setup(&mut dev).unwrap();
    let on = command(&dev);
    let off = (on & !2).to_le_bytes();

    // Turning decoding off under a mapped BAR: refused, every way it can be written.
    let mut whole = [0u8; 4];
    dev.config_read(4, &mut whole).unwrap();
    whole[0] &= !2;
    let mut around = [0u8; 6];
    dev.config_read(0, &mut around).unwrap();
    around[4] &= !2;
    for (what, r) in [
        ("config_write", dev.config_write(4, &off)),
        ("low byte", dev.config_write(4, &off[..1])),
        ("region_write", dev.region_write(pci::CONFIG, 4, &off)),
        ("command + status", dev.config_write(4, &whole)),
        ("ids + command", dev.config_write(0, &around)),
    ] {
        let e = r.expect_err(what);
        assert_eq!(e.kind(), ErrorKind::Busy, "{what}: {e}");
        assert_eq!(e.raw_errno(), None, "{what}: refused before the kernel");
        let msg = e.to_string();
        assert!(
            msg.contains("BAR0") && msg.contains("SIGBUS") && msg.contains("unmap_bar"),
            "{msg}"
        );
    }
    assert_eq!(command(&dev), on, "nothing was written");
    // Writes that keep decoding on pass.
    dev.config_write(4, &on.to_le_bytes()).unwrap();
    dev.config_write(5, &on.to_le_bytes()[1..]).unwrap();
    assert_eq!(dev.mmio(0).unwrap().read32(0).unwrap(), EDU_ID);

    // With no BAR mapped, decoding may go off: then BAR reads are errors,
    // and mapping a BAR is refused until it is back on.
    assert!(dev.unmap_bar(0));
    assert!(!dev.unmap_bar(0), "already unmapped");
    dev.config_write(4, &off).unwrap();
    assert_eq!(command(&dev) & 2, 0);
    let mut four = [0u8; 4];
    let e = dev.region_read(0, 0, &mut four).unwrap_err();
    assert_eq!(e.raw_errno(), Some(nix::errno::Errno::EIO), "{e}");
    let e = dev.map_bar(0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("memory decoding is off"), "{e}");
    dev.config_write(4, &on.to_le_bytes()).unwrap();
    dev.map_bar(0).unwrap();
    assert_eq!(dev.mmio(0).unwrap().read32(0).unwrap(), EDU_ID);
    dev.region_read(0, 0, &mut four).unwrap();
    assert_eq!(u32::from_le_bytes(four), EDU_ID);
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn memory_decoding_off_never_raises_sigbus() {
    const CHILD: &str = "IOMMUFD_DECODING_CHILD";
    if std::env::var_os(CHILD).is_some() {
        decoding_child();
        return;
    }
    // In a child process: a regression is a signal there, not a dead runner.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "memory_decoding_off_never_raises_sigbus",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.signal(),
        None,
        "the child was killed by signal {:?} (SIGBUS is 7):\n{log}",
        out.status.signal()
    );
    assert!(out.status.success(), "the child failed:\n{log}");
    assert!(log.contains("1 passed"), "the child ran the test:\n{log}");
}

/// One owner per IOMMU group in a process: while a `Group` holds the pair
/// group, opening it again (whole, in part, or a released member by BDF)
/// is refused. Before, `open_members` of the other member came back typed
/// `Group<BlockDma>` while its edu's DMA landed in the first value's IOAS.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_group_held_in_this_process_is_not_opened_again() {
    let t = Topology::discover();
    let fd = Iommufd::open().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mut g = Group::open_members(t.pair_group, &[t.pair[0].as_str()])
        .unwrap()
        .bind(&fd)
        .unwrap()
        .attach(&ioas)
        .unwrap();
    let busy = |e: iommufd::Error| {
        assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("group {}", t.pair_group)), "{msg}");
        assert!(msg.contains("Group::add"), "says the way in: {msg}");
    };
    busy(Group::open_members(t.pair_group, &[t.pair[1].as_str()]).unwrap_err());
    busy(Group::open(t.pair_group).unwrap_err());
    busy(Group::open_containing(&t.pair[1]).unwrap_err());
    // The way in: through the value that holds the group.
    g.add(&t.pair[1]).unwrap();
    let released = g.release(1).unwrap();
    busy(Group::open_members(t.pair_group, &[released.name()]).unwrap_err());
    g.rejoin(released).unwrap();
    support::edu_members(&mut g);
    for i in 0..2 {
        let out = support::round_trip(
            g.member(i).unwrap(),
            &ioas,
            b"one owner",
            iommufd::Iova::Any,
            iommufd::Iova::Any,
        );
        assert_eq!(out, b"one owner");
    }
    drop(g);
    pair_is_free(&t);
}

/// Removing an mdev whose device is open in this process would wait in
/// the kernel for this process to close it: refused before the write, and
/// the instance handed back; a `remove_on_drop` instance dropped while
/// open stays.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn an_mdev_open_in_this_process_is_not_removed_under_it() {
    use iommufd::mdev::{self, Mdev};
    let ty = mdev::parents()
        .unwrap()
        .into_iter()
        .flat_map(|p| p.types().unwrap())
        .find(|t| t.id() == "mtty-1")
        .expect("the mtty sample mdev");
    let m = ty.create().unwrap();
    let uuid = m.uuid().to_string();
    let dir = Path::new("/sys/bus/mdev/devices").join(&uuid);
    let dev = m.open().unwrap();
    let e = m.remove().unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::Busy, "{}", e.error());
    assert!(
        e.error().to_string().contains("wait for itself"),
        "{}",
        e.error()
    );
    let m = e.into_inner();
    // Bound and dropped with remove_on_drop while open: it stays.
    let fd = Iommufd::open().unwrap();
    let dev = dev.bind(&fd).unwrap();
    drop(m.remove_on_drop());
    assert!(dir.exists(), "an instance open here was removed");
    // Closed, it is removed.
    drop(dev);
    let m = Mdev::existing(&uuid).unwrap();
    m.remove().unwrap();
    assert!(!dir.exists());
}
