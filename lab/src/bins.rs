//! Finding the binaries the lab runs: `vigie-peer` (this package) and `vigie` (the daemon's
//! package). Both sit in the same `target/<profile>/` directory; a test binary lives one level
//! deeper, in `target/<profile>/deps/`.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// Overrides where the daemon binary is taken from.
pub const VIGIE_BIN_VAR: &str = "VIGIE_BIN";

/// `name` in the directory of `exe` or in its parent (for test binaries under `deps/`).
#[must_use]
pub fn near(exe: &Path, name: &str) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `name` next to the running executable.
#[must_use]
pub fn near_current_exe(name: &str) -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| near(&exe, name))
}

/// The `vigie` daemon binary: `$VIGIE_BIN`, else next to `anchor` (a binary of the same target
/// directory, e.g. `vigie-peer`; by default the running executable).
pub fn vigie(anchor: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(VIGIE_BIN_VAR) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("{VIGIE_BIN_VAR}={} is not a file", path.display());
    }
    match anchor {
        Some(anchor) => vigie_near(anchor),
        None => vigie_near(&std::env::current_exe()?),
    }
}

/// The `vigie` binary in the target directory of `anchor`, or why it is not there.
pub fn vigie_near(anchor: &Path) -> anyhow::Result<PathBuf> {
    match near(anchor, "vigie") {
        Some(path) => Ok(path),
        None => bail!(
            "the vigie daemon binary is missing next to {}: build it with `cargo build -p vigie` \
             (the same profile as this program), or point {VIGIE_BIN_VAR} at it",
            anchor.display()
        ),
    }
}

/// The `vigie-peer` binary next to the running executable (for the demo binary).
pub fn peer() -> anyhow::Result<PathBuf> {
    match near_current_exe("vigie-peer") {
        Some(p) => Ok(p),
        None => bail!(
            "vigie-peer is missing next to this program: build it with `cargo build -p vigie-lab`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tempdir::TempDir;

    #[test]
    fn the_daemon_is_found_beside_a_test_binary_or_the_message_says_how_to_build_it() {
        let target = TempDir::new("bins").unwrap();
        let deps = target.path().join("deps");
        std::fs::create_dir(&deps).unwrap();
        let test_binary = deps.join("e2e_enforce-0123");
        std::fs::write(&test_binary, "").unwrap();
        let missing = vigie_near(&test_binary).unwrap_err().to_string();
        assert!(missing.contains("cargo build -p vigie"), "{missing}");
        std::fs::write(target.path().join("vigie"), "").unwrap();
        assert_eq!(
            vigie_near(&test_binary).unwrap(),
            target.path().join("vigie")
        );
    }
}
