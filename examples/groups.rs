//! Prints this host's IOMMU groups, their members and drivers, and per group
//! whether it can be assigned with this crate, and what to do if not.
//!
//! `cargo run --example groups` (no privileges needed: it only reads sysfs).

use iommufd::sysfs::{self, PciDevice};
use std::path::Path;

fn main() {
    let sys = Path::new("/sys");
    let groups = match sysfs::groups(sys) {
        Ok(g) if !g.is_empty() => g,
        Ok(_) | Err(_) => {
            eprintln!("no IOMMU groups: boot with the IOMMU enabled (intel_iommu=on or amd_iommu=on) and check dmesg for DMAR/AMD-Vi");
            std::process::exit(1);
        }
    };
    let cdev = Path::new("/dev/vfio/devices").exists();
    let iommu = Path::new("/dev/iommu").exists();
    println!(
        "iommufd: {}; VFIO device cdev: {}",
        if iommu { "yes" } else { "no (CONFIG_IOMMUFD)" },
        if cdev {
            "yes"
        } else {
            "no (CONFIG_VFIO_DEVICE_CDEV)"
        }
    );
    for g in groups {
        let members = match sysfs::group_members(sys, g) {
            Ok(m) => m,
            Err(e) => {
                println!("group {g}: {e}");
                continue;
            }
        };
        let verdict = verdict(&members);
        println!("group {g}: {verdict}");
        for m in &members {
            println!(
                "    {}  {}",
                m.bdf,
                m.driver.as_deref().unwrap_or("(no driver)")
            );
        }
    }
}

fn verdict(members: &[PciDevice]) -> String {
    let bad: Vec<&PciDevice> = members.iter().filter(|m| !m.is_dma_safe()).collect();
    let on_vfio = members
        .iter()
        .filter(|m| m.driver.as_deref() == Some("vfio-pci"))
        .count();
    if !bad.is_empty() {
        let fixes: Vec<String> = bad.iter().map(|m| m.rebind_hint()).collect();
        return format!(
            "NOT assignable: {} on a driver that does its own DMA; to assign: {}",
            bad.iter()
                .map(|m| format!("{} ({})", m.bdf, m.driver.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", "),
            fixes.join("; ")
        );
    }
    match (on_vfio, members.len()) {
        (0, _) => {
            "viable, but no member is on vfio-pci yet (bind the ones you want with driver_override)"
                .into()
        }
        (_, 1) => "assignable: Device::open".into(),
        (n, _) => format!("assignable as a group ({n} on vfio-pci): Group::open, one IOAS for all"),
    }
}
