//! The guest's devices: the QEMU command-line topology and the shell that
//! hands every edu to vfio-pci inside the guest.

/// The guest's fixed topology (see README.md, "The guest"):
/// - singleton: an edu alone on the root bus;
/// - pair: two edus behind a conventional pci-bridge (one viable group of three);
/// - nonviable: an edu and a virtio-rng (on virtio-pci) behind a second pci-bridge.
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
];

/// `n` more edus, each alone on the root bus (so each is its own IOMMU
/// group): the bench guest's bring-up rows. `vmtest` adds none, so it stays
/// fast.
pub(crate) fn extra_edus(n: usize) -> Vec<String> {
    (0..n)
        .flat_map(|i| ["-device".to_string(), format!("edu,id=bench{i}")])
        .collect()
}

/// Shell run inside the guest before the job: every edu goes to vfio-pci
/// (driver_override + drivers_probe), the way an operator would do it.
pub(crate) const BIND_EDUS: &str = r#"
for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor)" = 0x1234 ] && [ "$(cat $d/device)" = 0x11e8 ] || continue
  b=${d##*/}
  echo vfio-pci > $d/driver_override
  [ -e $d/driver ] && echo $b > $d/driver/unbind
  echo $b > /sys/bus/pci/drivers_probe
  echo "guest: $b -> $(basename $(readlink $d/driver)) group $(basename $(readlink $d/iommu_group))"
done
"#;
