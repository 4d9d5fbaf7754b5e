//! Host tooling: root, apt, running commands.

use crate::Result;
use std::path::Path;
use std::process::{Command, Stdio};

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs Debian packages as root, or says exactly what to run.
pub(crate) fn apt_install(pkgs: &[&str], suite: Option<&str>) -> Result<()> {
    let mut cmd = vec!["apt-get", "install", "-y", "--no-install-recommends"];
    if let Some(s) = suite {
        cmd.extend(["-t", s]);
    }
    cmd.extend(pkgs);
    if !is_root() {
        return Err(format!(
            "missing packages; run as root: apt-get update && {}",
            cmd.join(" ")
        ));
    }
    if let Some(s) = suite {
        let list = Path::new("/etc/apt/sources.list.d").join(format!("{s}.sources"));
        if !list.exists() {
            let text = format!(
                "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {s}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            );
            std::fs::write(&list, text).map_err(|e| format!("{}: {e}", list.display()))?;
        }
    }
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new(cmd[0])
        .args(&cmd[1..])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {st}"))
    }
}

pub(crate) fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
