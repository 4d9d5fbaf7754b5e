//! Live update: process A sets up edu DMA, hands everything to a freshly
//! exec'd process B over a unix socket and exits; B adopts it, checked with
//! the kernel, and runs DMA with no unbind, no re-map and no reset.

mod support;

use iommufd::handover::{self, Handover};
use iommufd::{Access, ErrorKind, Iommufd, Iova};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use support::Edu;

const ROLE: &str = "IOMMUFD_HANDOVER_ROLE";
const TEST: &str = "live_update_hands_running_dma_to_a_new_process";
/// Two pages of guest RAM (a memfd), mapped by file at this IOVA.
const IOVA: u64 = 0x10_0000;
const LEN: usize = 8192;
const MSG_A: &[u8] = b"A: left in the device buffer across the handover";
const MSG_B: &[u8] = b"B: a round trip after A exited";

fn kernel() -> String {
    std::env::var("IOMMUFD_TEST_KERNEL_VERSION").unwrap_or_default()
}

/// The memfd's pages, seen by this process: volatile accesses only (the
/// device writes them).
struct Ram(memmap2::MmapRaw);

impl Ram {
    fn of(fd: &impl std::os::fd::AsRawFd) -> Ram {
        Ram(memmap2::MmapOptions::new()
            .len(LEN)
            .map_raw(fd.as_raw_fd())
            .unwrap())
    }
    fn write(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= LEN);
        for (i, b) in data.iter().enumerate() {
            // SAFETY: in bounds of the live mapping; volatile, the device shares it.
            unsafe { self.0.as_mut_ptr().add(off + i).write_volatile(*b) };
        }
    }
    fn read(&self, off: usize, n: usize) -> Vec<u8> {
        assert!(off + n <= LEN);
        // SAFETY: as in `write`.
        (0..n)
            .map(|i| unsafe { self.0.as_ptr().add(off + i).read_volatile() })
            .collect()
    }
}

/// The socket this process was given as its stdin.
fn socket_from_stdin() -> UnixStream {
    let fd = std::io::stdin().lock();
    use std::os::fd::AsFd;
    UnixStream::from(fd.as_fd().try_clone_to_owned().unwrap())
}

/// Process A: bind, map the memfd by file, DMA, hand over, exit.
fn process_a() {
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let ram_fd = support::memfd(LEN);
    let ram = Ram::of(&ram_fd);
    let map = ioas
        .map_file(
            &ram_fd,
            0,
            LEN as u64,
            Iova::Fixed(IOVA),
            Access::READ_WRITE,
        )
        .unwrap();
    assert!(map.by_file());
    let dev = support::bound_singleton(&fd).attach(&ioas).unwrap();
    ram.write(0, MSG_A);
    {
        let edu = Edu::new(&dev);
        edu.read_from_ram(IOVA, MSG_A.len() as u64); // now in the device buffer
        edu.write_to_ram(IOVA + 0x1000, MSG_A.len() as u64);
    }
    assert_eq!(ram.read(0x1000, MSG_A.len()), MSG_A, "A's own round trip");
    ram.write(0x1000, &[0; 64]);
    // Every handle goes into the handover: a clone kept here could still
    // act on what B owns (the send refuses then).
    drop(ioas);
    let pinned = support::vm_pin_kb();
    assert!(pinned >= LEN as u64 / 1024, "A's VmPin {pinned} kB");
    let mut h = Handover::new(fd).unwrap();
    h.device(dev).unwrap();
    h.mapping(map).unwrap();
    h.file(ram_fd);
    let sock = socket_from_stdin();
    h.send(&sock).unwrap();
    // B adopts and says so: from then on B, not A, is charged for the pages
    // (`Iommufd::change_process`; the kernel selftest's `change_process`).
    sock.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut said = [0u8; 1];
    std::io::Read::read_exact(&mut &sock, &mut said).expect("B never said it adopted");
    assert_eq!(
        support::vm_pin_kb(),
        pinned - LEN as u64 / 1024,
        "A is no longer charged for what B adopted"
    );
    eprintln!("A: handed over; exiting");
}

/// Process B: adopt, then DMA through what A set up.
fn process_b() {
    let sock = socket_from_stdin();
    let got = handover::receive(&sock).unwrap();
    let pinned = support::vm_pin_kb();
    let mut adopted = got.adopt().unwrap();
    assert_eq!(
        support::vm_pin_kb(),
        pinned + LEN as u64 / 1024,
        "B is charged for the pages it adopted"
    );
    std::io::Write::write_all(&mut &sock, b"!").unwrap();
    assert!(adopted.refused.is_empty(), "{:?}", adopted.refused);
    assert_eq!(adopted.ioases.len(), 1);
    assert_eq!(adopted.devices.len(), 1);
    assert_eq!(adopted.files.len(), 1);
    let ioas = adopted.ioases[0].clone();
    assert_eq!(
        adopted.inherited,
        vec![handover::Inherited {
            ioas: ioas.id(),
            iova: IOVA,
            len: LEN as u64
        }]
    );
    let mut dev = adopted.devices.pop().unwrap();
    assert_eq!(dev.ioas(), &ioas);
    assert!(dev.info().is_ok(), "bound");
    dev.map_bar(0).unwrap();
    let ram = Ram::of(&adopted.files[0]);
    let edu = Edu::new(&dev);
    // No reset: what A left in the device buffer is still there, and the
    // IOVA A mapped still reaches the memfd.
    edu.write_to_ram(IOVA + 0x1000, MSG_A.len() as u64);
    assert_eq!(
        ram.read(0x1000, MSG_A.len()),
        MSG_A,
        "the device buffer A filled"
    );
    ram.write(0x100, MSG_B);
    edu.read_from_ram(IOVA + 0x100, MSG_B.len() as u64);
    edu.write_to_ram(IOVA + 0x1800, MSG_B.len() as u64);
    assert_eq!(ram.read(0x1800, MSG_B.len()), MSG_B, "B's round trip");
    // The inherited mapping is B's to remove, by range.
    let dev = dev.detach().unwrap();
    assert_eq!(ioas.unmap(IOVA, LEN as u64).unwrap(), LEN as u64);
    dev.close();
    eprintln!("B: DMA works after the handover");
}

fn spawn(role: &str, sock: UnixStream) -> std::process::ExitStatus {
    start(role, sock).wait().unwrap()
}

/// A role runs without `CAP_IPC_LOCK` (`setpriv`), as an unprivileged VMM
/// does: the kernel charges no pinned page of a process that has it
/// (`IOPT_PAGES_ACCOUNT_NONE`), and `IOMMU_IOAS_CHANGE_PROCESS` then moves
/// nothing, so the accounting move could not be seen as root.
fn start(role: &str, sock: UnixStream) -> std::process::Child {
    Command::new("setpriv")
        .args(["--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--include-ignored", "--nocapture"])
        .env(ROLE, role)
        .stdin(Stdio::from(OwnedFd::from(sock)))
        // libtest's "... ok" lines would count as tests of their own; the
        // roles report on stderr, and so do their panics.
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn live_update_hands_running_dma_to_a_new_process() {
    match std::env::var(ROLE).as_deref() {
        Ok("a") => return process_a(),
        Ok("b") => return process_b(),
        _ => {}
    }
    if kernel() == "6.12" {
        // No MAP_FILE and no CHANGE_PROCESS (6.13): said so, clearly.
        let fd = Iommufd::open_iommufd().unwrap();
        let ioas = fd.alloc_ioas().unwrap();
        let e = ioas
            .map_file(
                &support::memfd(LEN),
                0,
                LEN as u64,
                Iova::Any,
                Access::READ_WRITE,
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        let e = fd.change_process().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.to_string().contains("6.13"), "{e}");
        return;
    }
    let (a, b) = UnixStream::pair().unwrap();
    // A sends, then waits for B's word that it adopted, to check that the
    // pinned pages left its account.
    let mut a = start("a", a);
    let st = spawn("b", b);
    assert!(st.success(), "process B: {st}");
    let st = a.wait().unwrap();
    assert!(st.success(), "process A: {st}");
}

/// A mapping made by address cannot go: refused before anything leaves,
/// naming it, and handed back working; the kernel refuses the accounting
/// move for the whole iommufd too, and nothing changes.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn handover_refuses_a_mapping_made_by_address() {
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = support::bound_singleton(&fd).attach(&ioas).unwrap();
    let (src, dst) = support::map_src_dst(
        &ioas,
        MSG_B,
        Iova::Fixed(IOVA),
        Iova::Fixed(IOVA + 0x10000),
        4096,
    );
    assert!(!src.by_file());
    let mut h = Handover::new(fd.clone()).unwrap();
    let e = h.mapping(src).unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::InvalidInput, "{}", e.error());
    let msg = e.error().to_string();
    assert!(
        msg.contains("0x100000") && msg.contains("by address"),
        "{msg}"
    );
    let src = e.into_inner();
    // The caller kept clones of the iommufd (`fd`) and of the IOAS (the
    // device and the mappings hold it): after a send they could still act
    // on what the new process owns, so the send is refused, naming them.
    let (a, _b) = UnixStream::pair().unwrap();
    let e = h.send(&a).unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::Busy, "{}", e.error());
    assert!(
        e.error().to_string().contains("handle(s) of the iommufd"),
        "{}",
        e.error()
    );
    let h = e.into_inner();
    let e = fd.change_process().unwrap_err();
    if kernel() == "6.12" {
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    } else {
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("by address"), "{e}");
    }
    // Nothing changed: DMA through both mappings still works.
    let edu = Edu::new(&dev);
    edu.read_from_ram(src.iova(), MSG_B.len() as u64);
    edu.write_to_ram(dst.iova(), MSG_B.len() as u64);
    let mut out = vec![0u8; MSG_B.len()];
    dst.read_bytes(0, &mut out).unwrap();
    assert_eq!(out, MSG_B);
    drop(h);
}

/// One open iommufd has one family of handles in a process: a dup of its
/// fd cannot be adopted as a second `Iommufd` (`from_fd` gives the same
/// one), and an IOAS id a handle holds cannot be adopted again. Before
/// this, a second handle could remove a live mapping's range behind its
/// `Mapping`, and its drop destroyed the IOAS the first one still used.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_second_handle_to_an_iommufd_or_an_ioas_is_refused() {
    let fd = Iommufd::open_iommufd().unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = support::bound_singleton(&fd).attach(&ioas).unwrap();
    let dup = || fd.iommufd_fd().unwrap().try_clone_to_owned().unwrap();
    let e = Iommufd::adopt(dup()).unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::Busy, "{}", e.error());
    assert!(
        e.error().to_string().contains("clone the Iommufd"),
        "{}",
        e.error()
    );
    // A fresh /dev/iommu is another iommufd, and is adopted.
    let other = support::open_rw("/dev/iommu");
    let fd3 = Iommufd::adopt(other).unwrap();
    assert_ne!(fd3, fd);
    // `from_fd` of a dup is the same iommufd.
    let fd2 = Iommufd::from_fd(dup());
    assert_eq!(fd2, fd);
    let e = iommufd::Ioas::adopt(&fd2, ioas.id()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    assert!(
        e.to_string().contains(&format!("IOAS {}", ioas.id())),
        "{e}"
    );
    // Once the handles are gone, the id can be adopted (here: by the same
    // process, as a new process would after a handover).
    let id = ioas.id();
    let out = support::round_trip(&dev, &ioas, MSG_B, Iova::Any, Iova::Any);
    assert_eq!(out, MSG_B);
    let dev = dev.detach().unwrap();
    drop(ioas);
    let e = iommufd::Ioas::adopt(&fd2, id).unwrap_err();
    assert_eq!(
        e.raw_errno(),
        Some(nix::errno::Errno::ENOENT),
        "destroyed with its last handle: {e}"
    );
    let again = fd.alloc_ioas().unwrap();
    let dev = dev.attach(&again).unwrap();
    let out = support::round_trip(&dev, &again, MSG_B, Iova::Any, Iova::Any);
    assert_eq!(out, MSG_B);
}

/// A handover message that names one IOAS or one device twice would make
/// two owners of one kernel thing in the new process: refused, and handed
/// back whole.
#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn a_handover_naming_a_thing_twice_is_refused() {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::io::IoSlice;
    use std::os::fd::{AsFd, AsRawFd};
    use support::raw;
    let t = support::Topology::discover();
    // Another process's iommufd, as raw fds: one IOAS, one bound device on it.
    let iommu = support::open_rw("/dev/iommu");
    let ioas = raw::alloc_ioas(&iommu).unwrap();
    // The edu behind its own root port, which has a bus reset.
    let bdf = t.bus_reset.clone().expect("the bus-reset edu");
    let dev = raw::open_device(&bdf);
    let dev_id = raw::bind_dev_id(&dev, &iommu).unwrap();
    raw::attach(&dev, ioas).unwrap();
    let send_as = |ioases: &[u32], devices: usize, dev_id: u32| {
        let mut b = b"IOMMUFD\x01".to_vec();
        for n in [ioases.len(), devices, 0, 0] {
            b.extend((n as u32).to_le_bytes());
        }
        for i in ioases {
            b.extend(i.to_le_bytes());
        }
        let mut fds = vec![iommu.as_raw_fd()];
        for _ in 0..devices {
            b.extend(dev_id.to_le_bytes());
            b.extend(ioas.to_le_bytes());
            b.extend((bdf.len() as u16).to_le_bytes());
            b.extend(bdf.as_bytes());
            fds.push(dev.as_fd().as_raw_fd());
        }
        let (a, b2) = UnixStream::pair().unwrap();
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(&b)],
            &cmsg,
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        handover::receive(&b2).unwrap()
    };
    let send = |ioases: &[u32], devices: usize| send_as(ioases, devices, dev_id);
    let e = send(&[ioas, ioas], 0).adopt().unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::Busy, "{}", e.error());
    assert!(
        e.error().to_string().contains(&format!("IOAS {ioas}")),
        "{}",
        e.error()
    );
    assert_eq!(
        e.into_inner().ioas_ids(),
        &[ioas, ioas],
        "handed back whole"
    );
    let e = send(&[ioas], 2).adopt().unwrap_err();
    assert_eq!(e.error().kind(), ErrorKind::InvalidInput, "{}", e.error());
    assert!(e.error().to_string().contains("twice"), "{}", e.error());
    drop(e);
    // Named once each, the same fds are adopted.
    let adopted = send(&[ioas], 1).adopt();
    if kernel() == "6.12" {
        // No IOMMU_IOAS_CHANGE_PROCESS: refused after the checks.
        let e = adopted.unwrap_err();
        assert_eq!(e.error().kind(), ErrorKind::Unsupported, "{}", e.error());
        return;
    }
    let mut adopted = adopted.unwrap();
    assert_eq!(adopted.devices.len(), 1, "{:?}", adopted.refused);
    let mut dev = adopted.devices.pop().unwrap();
    Edu::setup(&mut dev).unwrap();
    let out = support::round_trip(&dev, &adopted.ioases[0], MSG_B, Iova::Any, Iova::Any);
    assert_eq!(out, MSG_B);
    // Its dev_id is the message's: a hot reset holds the device only when
    // the kernel lists it under that id at its BDF.
    assert!(dev.hot_reset_info().unwrap().all_held());
    drop((dev, adopted));
    let mut adopted = send_as(&[ioas], 1, dev_id + 100).adopt().unwrap();
    let mut dev = adopted.devices.pop().unwrap();
    let info = dev.hot_reset_info().unwrap();
    assert!(
        !info.all_held(),
        "a device adopted under a wrong dev_id counts as held: {info}"
    );
    let e = dev.hot_reset().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
}
