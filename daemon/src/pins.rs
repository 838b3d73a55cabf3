//! The pin directory's layout: `maps/<MAP>`, `links/<iface>.<direction>`, and `state.json`
//! (what is attached, which daemon runs, which policy is in force), on a BPF filesystem.

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::loader::{Attachment, Direction};

/// `/sys/fs/bpf/vigie` unless told otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/vigie";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    State { path: PathBuf, message: String },
    #[error(
        "{path} holds some of vigie's pinned maps but not {missing}: they were left by another \
         version of vigie or by an interrupted start; run `vigie detach` with this pin directory \
         first (enforcement stops until the next `vigie run`)"
    )]
    Partial { path: PathBuf, missing: String },
    #[error(
        "another `vigie run`{} manages {path}: stop it before starting another on the same pin \
         directory (two daemons would each write the policy slots the other thinks it knows)",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Busy { path: PathBuf, pid: Option<u32> },
    #[error("mounting a BPF filesystem on {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PinsError + '_ {
    move |source| PinsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the pin directory holds, for `status`, `detach` and the next daemon.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub attachments: Vec<Attachment>,
    /// The daemon that maintains the policy, while it runs.
    pub daemon_pid: Option<u32>,
    pub policy_digest: Option<String>,
    pub policy_source: Option<String>,
    /// The kernel's service numbering of the policy in force (see
    /// `CompiledPolicy::keep_service_numbers`), for the next daemon to keep.
    pub service_numbering: Option<Vec<String>>,
    /// The kernel's group and rule numberings, with the numbers of removed groups and rules
    /// (see `CompiledPolicy::keep_group_numbers`, `keep_rule_numbers`): the counter rows are
    /// kept with the pinned maps, and the next daemon names them after these. Absent from the
    /// state files of earlier versions, which numbered by position.
    #[serde(default)]
    pub group_numbering: Option<Vec<String>>,
    #[serde(default)]
    pub rule_numbering: Option<Vec<String>>,
}

#[must_use]
pub fn map_path(pin_dir: &Path, map: &str) -> PathBuf {
    pin_dir.join("maps").join(map)
}

/// Whether the pin directory holds the maps of a running enforcement (`true`: they are
/// adopted, with what they hold) or none of them (`false`: the loader creates them empty). Some
/// but not all of them is refused: maps of another version, or an interrupted start, whose
/// contents the writer could not account for.
pub fn maps_pinned(pin_dir: &Path) -> Result<bool, PinsError> {
    let missing: Vec<&str> = vigie_common::maps::ALL
        .iter()
        .copied()
        .filter(|name| !map_path(pin_dir, name).exists())
        .collect();
    match missing.len() {
        0 => Ok(true),
        n if n == vigie_common::maps::ALL.len() => Ok(false),
        _ => Err(PinsError::Partial {
            path: pin_dir.join("maps"),
            missing: missing.join(", "),
        }),
    }
}

#[must_use]
pub fn link_path(pin_dir: &Path, iface: &str, direction: Direction) -> PathBuf {
    let direction = match direction {
        Direction::Outbound => "outbound",
        Direction::Reply => "reply",
    };
    // bpffs refuses names with a dot, which VLAN interfaces (eth0.100) have; a colon can never
    // be part of an interface name, so the substitution cannot make two interfaces collide.
    let iface = iface.replace('.', ":");
    pin_dir.join("links").join(format!("{iface}-{direction}"))
}

/// The claim of one daemon on a pin directory: an exclusive lock on a file beside the state
/// file, held while this value lives (the kernel releases it when the process ends, however it
/// ends, so a killed daemon never leaves a stale claim).
#[derive(Debug)]
pub struct DaemonLock {
    _held: nix::fcntl::Flock<fs::File>,
}

/// Claims `pin_dir` for this daemon; refused while another daemon holds it.
pub fn lock_daemon(pin_dir: &Path) -> Result<DaemonLock, PinsError> {
    let path = lock_path(pin_dir);
    let dir = path.parent().unwrap_or(Path::new("/run"));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(held) => {
            // The holder's pid, for `status` and `detach` (the state file names the daemon
            // only once it has applied a policy, and a killed one's pid stays there).
            let mut file: &fs::File = &held;
            file.set_len(0)
                .and_then(|()| {
                    std::io::Write::write_all(&mut file, std::process::id().to_string().as_bytes())
                })
                .map_err(io(&path))?;
            Ok(DaemonLock { _held: held })
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(PinsError::Busy {
            path: pin_dir.to_owned(),
            pid: holder(&path),
        }),
        Err((_, errno)) => Err(PinsError::Io {
            path,
            source: errno.into(),
        }),
    }
}

/// Who claims `pin_dir`, as its lock says: `Some(Some(pid))` while a daemon holds it (the pid
/// it wrote there), `Some(None)` if it is free (a pid the state file still names is then
/// stale: its daemon was killed, and the number may belong to another process by now), `None`
/// if there is no lock file (no daemon of this version ever ran here).
#[must_use]
pub fn claimant(pin_dir: &Path) -> Option<Option<u32>> {
    let path = lock_path(pin_dir);
    let file = fs::File::open(&path).ok()?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
        Ok(_probe) => Some(None),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Some(holder(&path)),
        Err(_) => None,
    }
}

/// The claim's file, beside the state file.
#[must_use]
pub fn lock_path(pin_dir: &Path) -> PathBuf {
    state_path(pin_dir).with_extension("lock")
}

/// The pid the claim's holder wrote in it.
fn holder(lock: &Path) -> Option<u32> {
    fs::read_to_string(lock)
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// Where the daemon's state for `pin_dir` is kept.
#[must_use]
pub fn state_path(pin_dir: &Path) -> PathBuf {
    // bpffs accepts only directories, pins and symlinks: the state lives beside it, in /run,
    // keyed by the pin directory, so that each pin directory has its own.
    let key: String = pin_dir
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    PathBuf::from("/run/vigie").join(format!("{key}.json"))
}

pub fn read_state(pin_dir: &Path) -> Result<Option<State>, PinsError> {
    let path = state_path(pin_dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PinsError::Io { path, source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| PinsError::State {
            path,
            message: e.to_string(),
        })
}

pub fn write_state(pin_dir: &Path, state: &State) -> Result<(), PinsError> {
    let path = state_path(pin_dir);
    let dir = path.parent().unwrap_or(Path::new("/run"));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let text = serde_json::to_string_pretty(state).unwrap_or_default();
    // Write then rename: a reader never sees half a file.
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, text).map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
}

/// Creates `pin_dir` on a BPF filesystem: inside an existing one if an ancestor is on bpffs,
/// else by mounting a new bpffs on `pin_dir` itself.
pub fn ensure_bpffs(pin_dir: &Path) -> Result<(), PinsError> {
    let mut ancestor = pin_dir;
    while !ancestor.exists() {
        match ancestor.parent() {
            Some(parent) => ancestor = parent,
            None => break,
        }
    }
    if is_bpffs(ancestor) {
        return fs::create_dir_all(pin_dir).map_err(io(pin_dir));
    }
    fs::create_dir_all(pin_dir).map_err(io(pin_dir))?;
    nix::mount::mount(
        Some("bpf"),
        pin_dir,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|source| PinsError::Mount {
        path: pin_dir.to_owned(),
        source,
    })
}

/// Removes every pin, the state file, and the directory (unmounting a bpffs vigie mounted).
pub fn remove_all(pin_dir: &Path) -> Result<(), PinsError> {
    for sub in ["links", "maps"] {
        let dir = pin_dir.join(sub);
        if dir.exists() {
            for entry in fs::read_dir(&dir).map_err(io(&dir))? {
                let entry = entry.map_err(io(&dir))?;
                fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            }
            fs::remove_dir(&dir).map_err(io(&dir))?;
        }
    }
    let state = state_path(pin_dir);
    if state.exists() {
        fs::remove_file(&state).map_err(io(&state))?;
    }
    // The claim's file goes too, unless a daemon holds it still (removed under a holder, a
    // new file would let a second daemon claim the directory beside it).
    let lock = lock_path(pin_dir);
    if let Ok(file) = fs::File::open(&lock)
        && let Ok(_free) =
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
    {
        fs::remove_file(&lock).map_err(io(&lock))?;
    }
    if pin_dir.exists() {
        let mounted_here =
            is_bpffs(pin_dir) && pin_dir.parent().is_some_and(|parent| !is_bpffs(parent));
        if mounted_here {
            let _ = nix::mount::umount(pin_dir);
        }
        fs::remove_dir(pin_dir).map_err(io(pin_dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Empty files stand for pins: only their presence is looked at.
    #[test]
    fn maps_are_adopted_all_or_none() {
        let dir = std::env::temp_dir().join(format!("vigie-pins-test-{}", std::process::id()));
        let maps = dir.join("maps");
        fs::create_dir_all(&maps).unwrap();
        assert!(!maps_pinned(&dir).unwrap(), "no pin: new maps");
        fs::write(map_path(&dir, vigie_common::maps::FLOWS), b"").unwrap();
        let partial = maps_pinned(&dir).unwrap_err().to_string();
        assert!(partial.contains("vigie detach"), "{partial}");
        assert!(partial.contains(vigie_common::maps::DST_V4_24), "{partial}");
        assert!(!partial.contains("FLOWS,"), "{partial}");
        for name in vigie_common::maps::ALL {
            fs::write(map_path(&dir, name), b"").unwrap();
        }
        assert!(maps_pinned(&dir).unwrap(), "every pin: adopted");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A daemon of this version adopts what an earlier one left, numbering included.
    #[test]
    fn state_files_without_group_or_rule_numbering_still_read() {
        let earlier = r#"{"attachments":[],"daemon_pid":null,"policy_digest":"ab",
            "policy_source":"/etc/vigie","service_numbering":["","zoom"]}"#;
        let state: State = serde_json::from_str(earlier).unwrap();
        assert_eq!(
            state.service_numbering.as_deref(),
            Some(&[String::new(), "zoom".into()][..])
        );
        assert_eq!((state.group_numbering, state.rule_numbering), (None, None));
    }
}
