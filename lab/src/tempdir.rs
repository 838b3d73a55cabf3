//! Temporary directories (events, logs, policy directories) removed on drop.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::netns::{is_stale, unique_name};

/// A fresh temporary directory (events, logs, policies), removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

/// What the names of the lab's temporary directories start with.
const NAME_PREFIX: &str = "vigie-lab-";

impl TempDir {
    /// A new directory `vigie-lab-<what><unique>` in the system's temporary directory.
    pub fn new(what: &str) -> anyhow::Result<Self> {
        let prefix = format!("{NAME_PREFIX}{what}");
        let path = std::env::temp_dir().join(unique_name(&prefix));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes the temporary directories of labs whose process died.
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let unique = rest.trim_start_matches(|c: char| c.is_ascii_lowercase() || c == '-');
        if is_stale(unique, "") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            crate::report::warn(format_args!("removing {}: {e}", self.path.display()));
        }
    }
}
