#[test]
#[ignore = "runs in the vmtest guest: cargo xtask vmtest"]
fn iommu_present() {
    assert!(std::path::Path::new("/dev/iommu").exists());
}
