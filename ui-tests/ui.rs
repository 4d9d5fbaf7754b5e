//! The compile-time rules of the crate, proven: every case in `compile-fail/`
//! must fail to compile with the snapshot beside it, and its twin in `pass/`,
//! which differs only in the forbidden step, must compile and run.
//! Regenerate snapshots with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui-tests/compile-fail/*.rs");
    t.pass("ui-tests/pass/*.rs");
    // Rules of the `vm-memory` feature (cargo test --all-features).
    #[cfg(feature = "vm-memory")]
    {
        t.compile_fail("ui-tests/compile-fail-vm-memory/*.rs");
        t.pass("ui-tests/pass-vm-memory/*.rs");
    }
}

/// Every compile-fail case has a twin of the same name.
#[test]
fn every_case_has_a_twin() {
    let dirs = [
        ("compile-fail", "pass"),
        ("compile-fail-vm-memory", "pass-vm-memory"),
    ];
    for e in dirs.iter().flat_map(|(fail, pass)| {
        std::fs::read_dir(format!("ui-tests/{fail}"))
            .unwrap()
            .map(move |e| (e, pass))
    }) {
        let (e, pass) = e;
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            let twin = std::path::Path::new("ui-tests")
                .join(pass)
                .join(p.file_name().unwrap());
            assert!(
                twin.exists(),
                "{} has no twin {}",
                p.display(),
                twin.display()
            );
        }
    }
}
