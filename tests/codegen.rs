//! What an MMIO access costs, checked in the assembly rather than claimed in
//! prose: `examples/mmio_codegen.rs` is compiled in release to assembly, and
//! the path from the entry of `probe_read32` / `probe_write32` to their first
//! `ret` (the in-bounds access to a BAR mapped whole; the error and sparse-BAR
//! paths are laid out after it) must be the bounds and alignment check plus
//! one volatile load or store: no call, no division, no loop.
#![cfg(target_arch = "x86_64")]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles the probe example to assembly (AT&T syntax) and returns it.
fn assembly() -> String {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("codegen");
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "rustc",
            "--offline",
            "--release",
            "--example",
            "mmio_codegen",
        ])
        .arg("--target-dir")
        .arg(&target)
        .args(["--", "--emit", "asm", "-C", "codegen-units=1"])
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo rustc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = target.join("release/examples");
    let newest: PathBuf = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "s")
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("mmio_codegen")
        })
        .max_by_key(|p| p.metadata().unwrap().modified().unwrap())
        .expect("an .s file");
    std::fs::read_to_string(newest).unwrap()
}

/// One instruction: mnemonic and operands (split on top-level commas).
#[derive(Debug)]
struct Insn {
    text: String,
    op: String,
    args: Vec<String>,
}

impl Insn {
    fn parse(line: &str) -> Insn {
        let text = line.trim().to_string();
        let (op, rest) = text.split_once(char::is_whitespace).unwrap_or((&text, ""));
        let mut args = Vec::new();
        let (mut depth, mut cur) = (0, String::new());
        for c in rest.trim().chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    args.push(std::mem::take(&mut cur).trim().to_string());
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        if !cur.trim().is_empty() {
            args.push(cur.trim().to_string());
        }
        Insn {
            op: op.to_string(),
            args,
            text,
        }
    }

    fn is_mem(arg: &str) -> bool {
        arg.contains('(')
    }
}

/// The instructions of `sym` from its entry to its first `ret`, and the
/// labels seen before each (to find backward jumps).
fn hot_path(asm: &str, sym: &str) -> Vec<Insn> {
    let start = asm
        .find(&format!("\n{sym}:\n"))
        .unwrap_or_else(|| panic!("{sym} not in the assembly"));
    let mut seen_labels = Vec::new();
    let mut out = Vec::new();
    for line in asm[start..].lines().skip(2) {
        let t = line.trim();
        if t.starts_with(".Lfunc_end") {
            break;
        }
        if let Some(label) = t.strip_suffix(':') {
            seen_labels.push(label.to_string());
            continue;
        }
        if t.is_empty() || t.starts_with('.') || t.starts_with('#') {
            continue;
        }
        let i = Insn::parse(t);
        if i.op.starts_with('j') {
            let target = i.args.last().cloned().unwrap_or_default();
            assert!(
                !seen_labels.contains(&target),
                "{sym}: backward jump (a loop) on the hot path: {}",
                i.text
            );
        }
        let ret = i.op.starts_with("ret");
        out.push(i);
        if ret {
            return out;
        }
    }
    panic!("{sym}: no ret found");
}

fn listing(path: &[Insn]) -> String {
    path.iter()
        .map(|i| format!("    {}", i.text))
        .collect::<Vec<_>>()
        .join("\n")
}

fn common_checks(sym: &str, path: &[Insn]) {
    println!(
        "{sym} hot path ({} instructions):\n{}",
        path.len(),
        listing(path)
    );
    for i in path {
        assert!(
            !i.op.starts_with("call") && !i.op.contains("div"),
            "{sym}: `{}` on the hot path:\n{}",
            i.text,
            listing(path)
        );
    }
    // The check (two compares and a mask test), three loads of the view's
    // fields, the null test, the access, the result: a guard against a
    // regression that would add work, with room for register shuffles.
    assert!(
        path.len() <= 20,
        "{sym}: {} instructions on the hot path:\n{}",
        path.len(),
        listing(path)
    );
}

#[test]
fn mmio_read32_is_a_bounds_check_and_one_load() {
    let asm = assembly();
    assert!(
        !asm.contains("\tdiv") && !asm.contains("\tidiv"),
        "a division in the probes"
    );
    let path = hot_path(&asm, "probe_read32");
    common_checks("probe_read32", &path);
    // Exactly one 32-bit load from memory: the register itself. (The view's
    // fields are 64-bit loads; the bounds compare reads the size in place.)
    let loads: Vec<&Insn> = path
        .iter()
        .filter(|i| i.op == "movl" && i.args.len() == 2 && Insn::is_mem(&i.args[0]))
        .collect();
    assert_eq!(
        loads.len(),
        1,
        "one 32-bit load expected:\n{}",
        listing(&path)
    );
}

#[test]
fn mmio_write32_is_a_bounds_check_and_one_store() {
    let asm = assembly();
    let path = hot_path(&asm, "probe_write32");
    common_checks("probe_write32", &path);
    // Exactly one store to memory, 32 bits wide, of the caller's value.
    let stores: Vec<&Insn> = path
        .iter()
        .filter(|i| i.op.starts_with("mov") && i.args.len() == 2 && Insn::is_mem(&i.args[1]))
        .collect();
    assert_eq!(stores.len(), 1, "one store expected:\n{}", listing(&path));
    assert_eq!(stores[0].op, "movl", "a 32-bit store: {}", stores[0].text);
    assert!(
        !stores[0].args[0].starts_with('$'),
        "the store writes the caller's value: {}",
        stores[0].text
    );
}

/// Loads from memory of `width` (`movzwl`, `movl`, `movq`) on the path.
fn loads<'a>(path: &'a [Insn], ops: &[&str]) -> Vec<&'a Insn> {
    path.iter()
        .filter(|i| ops.contains(&i.op.as_str()) && i.args.len() == 2 && Insn::is_mem(&i.args[0]))
        .collect()
}

#[test]
fn ring_field_read_is_an_index_check_and_one_load() {
    let asm = assembly();
    let path = hot_path(&asm, "probe_ring_field");
    common_checks("probe_ring_field", &path);
    // One 16-bit load: the field. (The ring's base and length are 64-bit
    // loads of the view.)
    let l = loads(&path, &["movzwl", "movw"]);
    assert_eq!(l.len(), 1, "one 16-bit load expected:\n{}", listing(&path));
    assert!(
        path.len() <= 12,
        "index check and load: {} instructions\n{}",
        path.len(),
        listing(&path)
    );
}

#[test]
fn ring_field_write_is_an_index_check_and_one_store() {
    let asm = assembly();
    let path = hot_path(&asm, "probe_ring_set_field");
    common_checks("probe_ring_set_field", &path);
    let stores: Vec<&Insn> = path
        .iter()
        .filter(|i| i.op.starts_with("mov") && i.args.len() == 2 && Insn::is_mem(&i.args[1]))
        .collect();
    assert_eq!(stores.len(), 1, "one store expected:\n{}", listing(&path));
    assert_eq!(stores[0].op, "movq", "a 64-bit store: {}", stores[0].text);
    assert!(
        !stores[0].args[0].starts_with('$'),
        "the caller's value: {}",
        stores[0].text
    );
    assert!(
        path.len() <= 12,
        "index check and store: {} instructions\n{}",
        path.len(),
        listing(&path)
    );
}

#[test]
fn mapping_read32_is_a_bounds_check_and_one_load() {
    let asm = assembly();
    let path = hot_path(&asm, "probe_mapping_read32");
    common_checks("probe_mapping_read32", &path);
    let l = loads(&path, &["movl"]);
    assert_eq!(l.len(), 1, "one 32-bit load expected:\n{}", listing(&path));
}

#[test]
fn fixed_ring_field_read_is_one_and_and_one_load() {
    let asm = assembly();
    let path = hot_path(&asm, "probe_fixed_ring_field");
    common_checks("probe_fixed_ring_field", &path);
    assert!(
        !path.iter().any(|i| i.op.starts_with('j')),
        "no branch: the index wraps\n{}",
        listing(&path)
    );
    assert_eq!(
        loads(&path, &["movzwl", "movw"]).len(),
        1,
        "{}",
        listing(&path)
    );
    assert!(path.len() <= 6, "{}", listing(&path));
}

#[test]
fn register_write_is_one_store() {
    let asm = assembly();
    let path = hot_path(&asm, "probe_register_write");
    common_checks("probe_register_write", &path);
    let stores: Vec<&Insn> = path
        .iter()
        .filter(|i| i.op.starts_with("mov") && i.args.len() == 2 && Insn::is_mem(&i.args[1]))
        .collect();
    assert_eq!(stores.len(), 1, "{}", listing(&path));
    assert!(path.len() <= 3, "{}", listing(&path));
}
