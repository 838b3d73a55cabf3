//! Pin directories for daemons run inside the lab.
//!
//! `ip netns exec` gives its command a private mount namespace with a fresh /sys, so a bpffs
//! mounted there (or the machine's /sys/fs/bpf) dies with the command. The lab mounts one bpffs
//! in the root mount namespace, at [`LAB_BPFFS`], which every `ip netns exec` inherits; each
//! daemon gets its own subdirectory, removed when its guard drops. The mount itself stays: other
//! tests may be using it.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context as _, bail};

use crate::netns::{is_stale, run_checked, unique_name};

/// Where the lab's bpffs is mounted.
pub const LAB_BPFFS: &str = "/run/vigie-tests";
/// What the lab's pin directories are called (`pins<pid>x<n>t<time>`).
const PIN_DIR_PREFIX: &str = "pins";
/// Serialises the check-then-mount across processes (test binaries may run in parallel).
const LOCK_FILE: &str = "/run/vigie-tests.lock";

/// Mounts the lab's bpffs unless it is already mounted.
pub fn ensure_mounted() -> anyhow::Result<()> {
    // Threads of one process: flock is per open file, so take a process lock too.
    static ONCE: Mutex<bool> = Mutex::new(false);
    let mut done = ONCE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if *done {
        return Ok(());
    }
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .with_context(|| format!("opening {LOCK_FILE}"))?;
    // SAFETY: flock on a file descriptor we own; it is released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context("locking the lab bpffs");
    }
    std::fs::create_dir_all(LAB_BPFFS).with_context(|| format!("creating {LAB_BPFFS}"))?;
    if !is_bpffs(Path::new(LAB_BPFFS))? {
        run_checked(Command::new("mount").args(["-t", "bpf", "bpf", LAB_BPFFS]))?;
        if !is_bpffs(Path::new(LAB_BPFFS))? {
            bail!("{LAB_BPFFS} is still not a BPF filesystem after mounting one");
        }
    }
    sweep_stale_pin_dirs();
    *done = true;
    Ok(())
}

/// Removes the pin directories of labs whose process died (whatever they pinned is unpinned
/// with them; their namespaces, and so their interfaces, are gone or going).
pub fn sweep_stale_pin_dirs() {
    let Ok(entries) = std::fs::read_dir(LAB_BPFFS) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_stale(&name, PIN_DIR_PREFIX) {
            crate::report::warn(format_args!("removing pin directory {name} of a dead lab"));
            let _ = std::fs::remove_dir_all(entry.path());
            remove_daemon_files(&entry.path());
        }
    }
}

fn is_bpffs(path: &Path) -> anyhow::Result<bool> {
    let out = run_checked(Command::new("stat").args(["-f", "-c", "%T"]).arg(path))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "bpf_fs")
}

/// A fresh directory of the lab's bpffs, removed (with whatever is pinned in it) on drop.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    pub fn new() -> anyhow::Result<Self> {
        ensure_mounted()?;
        let path = Path::new(LAB_BPFFS).join(unique_name(PIN_DIR_PREFIX));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => crate::report::warn(format_args!("removing {}: {e}", self.path.display())),
        }
        remove_daemon_files(&self.path);
    }
}

/// The daemon keeps its state and its claim on a pin directory outside bpffs, keyed by the
/// directory: they go with it (a test that ends without `vigie detach` left them).
fn remove_daemon_files(pin_dir: &Path) {
    for file in [
        vigie::pins::lock_path(pin_dir),
        vigie::pins::state_path(pin_dir),
    ] {
        let _ = std::fs::remove_file(file);
    }
}
