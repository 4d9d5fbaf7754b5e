//! The guest's devices: the QEMU command-line topology and the shell that
//! hands every edu to vfio-pci inside the guest.

/// The guest's fixed topology (see README.md, "The guest"):
/// - singleton: an edu alone on the root bus;
/// - pair: two edus behind a conventional pci-bridge (one viable group of three);
/// - nonviable: an edu and a virtio-rng (on virtio-pci) behind a second pci-bridge;
/// - bus-reset: an edu on a PCIe root port without hotplug (a secondary bus
///   reset is its only reset);
/// - hotplug: an edu on a hotplug-capable PCIe root port, for `device_del`
///   over QMP (its REQ interrupt);
/// - nvme: an NVMe controller on a PCIe root port, backed by a raw image
///   on the host ([`nvme`]);
/// - sriov-pf: an igb NIC (an SR-IOV PF, up to 7 VFs) on a PCIe root port;
///   the guest kernel runs with `vfio_pci.enable_sriov=1`, so its VFs can
///   be made while the PF is on vfio-pci (VF tokens).
pub(crate) const TOPOLOGY: &[&str] = &[
    "-device",
    "edu,id=singleton",
    "-device",
    "pci-bridge,id=pair,chassis_nr=1",
    "-device",
    "edu,bus=pair,addr=1",
    "-device",
    "edu,bus=pair,addr=2",
    "-device",
    "pci-bridge,id=nonviable,chassis_nr=2",
    "-device",
    "edu,bus=nonviable,addr=1",
    "-device",
    "virtio-rng-pci,bus=nonviable,addr=2",
    "-device",
    "pcie-root-port,id=rp_reset,chassis=5,slot=5,hotplug=off",
    "-device",
    "edu,id=bus_reset,bus=rp_reset",
    // Native PCIe hotplug (pciehp in the guest) instead of ACPI hotplug, so
    // that a QMP device_del reaches vfio-pci as an unplug request (REQ).
    "-global",
    "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
    "-device",
    "pcie-root-port,id=rp_hotplug,chassis=6,slot=6,hotplug=on",
    "-device",
    "edu,id=hotplug,bus=rp_hotplug",
    "-device",
    "pcie-root-port,id=rp_sriov,chassis=3,slot=3,hotplug=off",
    "-device",
    "igb,id=sriov_pf,bus=rp_sriov",
];

/// The NVMe controller and its backing image (`img`, a raw file on the
/// host): 65 MSI-X vectors, its MSI-X table inside BAR0.
pub(crate) fn nvme(img: &std::path::Path) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("file={},if=none,id=nv0,format=raw", img.display()),
        "-device".into(),
        "pcie-root-port,id=rp_nvme,chassis=4,slot=4,hotplug=off".into(),
        "-device".into(),
        "nvme,serial=iommufd-nvme0,drive=nv0,bus=rp_nvme".into(),
    ]
}

/// `n` more edus, each alone on the root bus (so each is its own IOMMU
/// group): the bench guest's bring-up rows. `vmtest` adds none, so it stays
/// fast.
pub(crate) fn extra_edus(n: usize) -> Vec<String> {
    (0..n)
        .flat_map(|i| ["-device".to_string(), format!("edu,id=bench{i}")])
        .collect()
}

/// Shell run inside the guest before the job: every edu, the NVMe
/// controller and the igb PF go to vfio-pci (driver_override + drivers_probe), the way an
/// operator would do it.
pub(crate) const BIND_EDUS: &str = r#"
for d in /sys/bus/pci/devices/*; do
  id="$(cat $d/vendor):$(cat $d/device)"
  [ "$id" = 0x1234:0x11e8 ] || [ "$id" = 0x8086:0x10c9 ] || [ "$(cat $d/class)" = 0x010802 ] || continue
  b=${d##*/}
  echo vfio-pci > $d/driver_override
  [ -e $d/driver ] && echo $b > $d/driver/unbind
  echo $b > /sys/bus/pci/drivers_probe
  echo "guest: $b -> $(basename $(readlink $d/driver)) group $(basename $(readlink $d/iommu_group))"
done
"#;
