//! Building the test, example and bench executables that run in the guest.

use crate::{root, Result};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Builds with cargo and returns `(target name, executable)` for each artifact kept by `keep`.
pub(crate) fn cargo_build(
    args: &[&str],
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Result<Vec<(String, PathBuf)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root())
        .args(args)
        .args(["--message-format=json-render-diagnostics", "-p", "iommufd"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo {} failed", args.join(" ")));
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || !keep(&v) {
            continue;
        }
        if let Some(exe) = v["executable"].as_str() {
            found.push((
                v["target"]["name"].as_str().unwrap_or("?").to_string(),
                exe.into(),
            ));
        }
    }
    Ok(found)
}
