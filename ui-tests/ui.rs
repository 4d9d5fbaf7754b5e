//! The compile-time rules of the crate, proven: every case in `compile-fail/`
//! must fail to compile with the snapshot beside it, and its twin in `pass/`,
//! which differs only in the forbidden step, must compile and run.
//! Regenerate snapshots with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui-tests/compile-fail/*.rs");
    t.pass("ui-tests/pass/*.rs");
}

/// Every compile-fail case has a twin of the same name.
#[test]
fn every_case_has_a_twin() {
    for e in std::fs::read_dir("ui-tests/compile-fail").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            let twin = std::path::Path::new("ui-tests/pass").join(p.file_name().unwrap());
            assert!(
                twin.exists(),
                "{} has no twin {}",
                p.display(),
                twin.display()
            );
        }
    }
}
