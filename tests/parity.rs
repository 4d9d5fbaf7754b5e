//! Keeps `docs/SELFTEST_PARITY.md` true (a host test): every crate test a
//! row names (`guest_file::test`) is a test function of that file, every ui
//! case (`ui:name`) has its compile-fail file and its twin, every row has a
//! class, and the counts table says what the rows say.

use std::collections::BTreeMap;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The backticked `prefix…` names in `text` (word characters and `::`/`:`).
fn names<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(move |s| s.starts_with(prefix))
}

#[test]
fn the_parity_table_names_tests_that_exist_and_counts_its_rows() {
    let doc = std::fs::read_to_string(root().join("docs/SELFTEST_PARITY.md")).unwrap();
    let start = doc.find("## `iommufd.c`").expect("the iommufd.c section");
    let end = doc.find("## What is left").expect("the last section");
    let rows: Vec<&str> = doc[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let classes = ["yes", "part", "no", "hook", "malformed", "type1", "types"];
    let mut missing = Vec::new();
    for row in &rows {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        assert_eq!(cells.len(), 4, "a row of four cells: {row}");
        let class = classes
            .iter()
            .find(|c| {
                let last = cells[3].trim();
                last == **c
                    || last.starts_with(&format!("{c}:"))
                    || last.starts_with(&format!("{c} "))
            })
            .unwrap_or_else(|| panic!("no class in {row}"));
        *counts.entry(class).or_default() += 1;
        for name in names(cells[2], "guest_") {
            let (file, test) = name.split_once("::").unwrap_or_else(|| panic!("{name}"));
            let src = std::fs::read_to_string(root().join("tests").join(format!("{file}.rs")))
                .unwrap_or_else(|e| panic!("{name}: tests/{file}.rs: {e}"));
            if !src.contains(&format!("\nfn {test}()")) {
                missing.push(name.to_string());
            }
        }
        for name in names(cells[2], "ui:") {
            let case = &name[3..];
            for dir in ["compile-fail", "pass"] {
                let p = root().join("ui-tests").join(dir).join(format!("{case}.rs"));
                if !p.is_file() {
                    missing.push(format!("{name} ({dir})"));
                }
            }
        }
        // A row that claims a reproduction names one.
        if matches!(*class, "yes" | "part") {
            assert!(
                names(cells[2], "guest_").next().is_some(),
                "a {class} row names no guest test: {row}"
            );
        }
        if *class == "types" {
            assert!(names(cells[2], "ui:").next().is_some(), "no ui case: {row}");
        }
    }
    assert!(missing.is_empty(), "named but not found: {missing:#?}");
    assert_eq!(rows.len(), 102, "one row per TEST_F of the 7.3 sources");
    // The counts table.
    let table = &doc[doc.find("## Counts").unwrap()..start];
    for class in classes {
        let line = table
            .lines()
            .find(|l| l.contains(&format!("(**{class}**)")))
            .unwrap_or_else(|| panic!("no count for {class}"));
        let n: usize = line
            .trim_end_matches('|')
            .rsplit('|')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(
            n,
            counts.get(class).copied().unwrap_or(0),
            "{class}: {line}"
        );
    }
}
