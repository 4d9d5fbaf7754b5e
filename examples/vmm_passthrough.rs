//! What a VMM does when a PCI device is hot-plugged into a guest, and
//! unplugged again, with nothing but the crate's safe API:
//!
//! 1. open the device by BDF, or take the cdev fd a privileged helper
//!    opened (`--fd N`, as libvirt hands fds to QEMU);
//! 2. bind it to an iommufd: DMA is blocked;
//! 3. map guest RAM, held in rust-vmm's vm-memory, at its guest-physical
//!    addresses (IOVA = GPA), then attach: the device now DMAs at GPAs;
//! 4. map the BARs for KVM memory slots (`host_address` is what
//!    `KVM_SET_USER_MEMORY_REGION` takes);
//! 5. route the device's MSI to an eventfd (a KVM irqfd would take it);
//! 6. at hot-unplug: interrupts off, detach, close (which unbinds), unmap guest RAM.
//!
//! Between 5 and 6 it stands in for the guest's driver (the device is QEMU's
//! `edu`): it has the device copy bytes from one GPA to another and raise
//! an interrupt, and checks both through vm-memory and the eventfd.
//!
//! ```text
//! vmm_passthrough [<BDF> | --fd <N>]      (default: the test guest's singleton edu)
//! ```
//!
//! Run it in the test guest with `cargo xtask vmtest vmm_passthrough` (it
//! is a guest test, `tests/guest_examples.rs`). Needs the `vm-memory` feature.

#[path = "../tests/support/mod.rs"]
mod support;

use iommufd::{pci, Access, Device, Iommufd};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};
use support::{Edu, Topology};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap};
use vmm_sys_util::eventfd::EventFd;

type Error = Box<dyn std::error::Error>;

/// The guest's RAM: 2 MiB at GPA 0 and 2 MiB at 4 MiB, each a shared memfd
/// mapping (what a VMM needs for live update), with a hole between.
fn guest_ram() -> Result<GuestMemoryMmap, Error> {
    let region = |gpa: u64| -> Result<GuestRegionMmap, Error> {
        let fd =
            nix::sys::memfd::memfd_create(c"guest-ram", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
        let file = std::fs::File::from(fd);
        file.set_len(2 << 20)?;
        Ok(GuestRegionMmap::from_range(
            GuestAddress(gpa),
            2 << 20,
            Some(FileOffset::new(file, 0)),
        )?)
    };
    Ok(GuestMemoryMmap::from_regions(vec![
        region(0)?,
        region(4 << 20)?,
    ])?)
}

fn open(args: &[String]) -> Result<Device<iommufd::Unbound>, Error> {
    match args {
        [flag, n] if flag == "--fd" => {
            let n: i32 = n.parse()?;
            // SAFETY: the caller (a privileged helper) handed this process
            // fd `n`, an open VFIO device cdev, and nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(n) };
            // Checked with sysfs: a VFIO cdev, alone in its IOMMU group.
            Ok(Device::from_fd(fd).map_err(|e| e.into_parts().1)?)
        }
        [bdf] => Ok(Device::open(bdf)?),
        [] => Ok(Device::open(&Topology::discover().singleton)?),
        _ => Err("usage: vmm_passthrough [<BDF> | --fd <N>]".into()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("vmm_passthrough: {e}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<(), Error> {
    let mem = guest_ram()?;
    let iommufd = Iommufd::open()?;
    let ioas = iommufd.alloc_ioas()?;

    // Hot-plug.
    let dev = open(args)?;
    let name = dev.name().to_string();
    let mut dev = dev.bind(&iommufd).map_err(|e| e.into_parts().1)?;
    let ram = ioas.map_guest_memory(&mem, Access::READ_WRITE)?;
    for m in ram.iter() {
        let how = if m.by_file() { "by file" } else { "by address" };
        println!(
            "{name}: guest RAM GPA {:#x} + {:#x} mapped {how}",
            m.iova(),
            m.len()
        );
    }
    let info = dev.info()?;
    for bar in 0..pci::ROM.min(info.num_regions) {
        let r = dev.region_info(bar)?;
        if r.size == 0 || !r.mmappable() {
            continue;
        }
        dev.map_bar(bar)?;
        let mmio = dev.mmio(bar)?;
        // A KVM memory slot: guest BAR address -> this host address, this size.
        println!(
            "{name}: BAR{bar} {:#x} bytes at host address {:p} (for a KVM memory slot)",
            mmio.size(),
            mmio.host_address(0).ok_or("empty BAR")?
        );
    }
    Edu::enable(&dev)?; // memory space + bus master, as the guest's driver would
    let dev = dev.attach(&ioas).map_err(|e| e.into_parts().1)?;

    let msi = dev.irq_info(pci::MSI_IRQ)?;
    let irq = EventFd::new(nix::libc::EFD_NONBLOCK)?;
    dev.set_irq_eventfds(pci::MSI_IRQ, 0, std::slice::from_ref(&irq))?;
    println!("{name}: MSI: {} vector(s), vector 0 -> eventfd", msi.count);

    // The guest at work: a DMA from GPA 0x1000 to GPA 0x401000 (across
    // the hole), then an interrupt.
    let msg = b"guest RAM, IOVA = GPA, through the IOMMU";
    let (src, dst) = (0x1000u64, (4 << 20) + 0x1000u64);
    mem.write_slice(msg, GuestAddress(src))?;
    let edu = Edu::new(&dev);
    edu.read_from_ram(src, msg.len() as u64);
    edu.write_to_ram(dst, msg.len() as u64);
    let mut out = vec![0u8; msg.len()];
    mem.read_slice(&mut out, GuestAddress(dst))?;
    if out != msg {
        return Err(format!("DMA GPA {src:#x} -> {dst:#x} did not arrive: {out:?}").into());
    }
    edu.raise_irq(1);
    let start = Instant::now();
    let fired = loop {
        match irq.read() {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if start.elapsed() > Duration::from_secs(10) {
                    return Err("the MSI never reached the eventfd".into());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e.into()),
        }
    };
    edu.ack_irq(1);

    // Hot-unplug: interrupts off, DMA blocked, then the fd closed, which
    // unbinds the device and returns its group to the kernel (BARs are
    // unmapped first). `unbind` instead would keep an unbound fd to bind
    // again, but it reopens the cdev by path, which a VMM that got its fd
    // from a helper may not be allowed to do.
    dev.disable_irqs(pci::MSI_IRQ)?;
    let dev = dev.detach().map_err(|e| e.into_parts().1)?;
    dev.close();
    drop(ram);
    println!(
        "{name}: passthrough ok: {} bytes GPA {src:#x} -> {dst:#x}, MSI fired {fired}x, unplugged",
        msg.len()
    );
    Ok(())
}
