//! Watching a policy directory: `policy.toml`, the catalog and the GeoIP databases.
//!
//! Editors save by writing a new file and renaming it over the old one, and an import or a
//! `git pull` changes several files at once: changes are gathered until the directory has
//! been quiet for a moment, then reported once, so that the daemon compiles what the operator
//! meant and not a half-written state.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// How long the directory must stay quiet before a change is reported.
pub const SETTLE: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watching {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

pub struct PolicyWatch {
    changes: mpsc::Receiver<()>,
    /// Kept alive: dropping it stops the notifications.
    _watcher: RecommendedWatcher,
    watched: Vec<PathBuf>,
}

impl PolicyWatch {
    /// Watches `dir`, its `catalog/` and `geoip/`: each on its own and by its real path, since
    /// a link (the examples link the shipped catalog) is not followed by a recursive watch.
    pub fn new(dir: &Path) -> Result<Self, WatchError> {
        let (tx, changes) = mpsc::channel(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = event.is_ok_and(|e| !matches!(e.kind, EventKind::Access(_)));
                if relevant {
                    // A full channel already holds a change to report: nothing is lost.
                    let _ = tx.try_send(());
                }
            })
            .map_err(|source| WatchError::Watch {
                path: dir.to_owned(),
                source,
            })?;
        let mut dirs = Vec::new();
        for path in [dir.to_owned(), dir.join("catalog"), dir.join("geoip")] {
            let Ok(real) = std::fs::canonicalize(&path) else {
                continue;
            };
            if dirs.contains(&real) {
                continue;
            }
            watcher
                .watch(&real, RecursiveMode::NonRecursive)
                .map_err(|source| WatchError::Watch {
                    path: real.clone(),
                    source,
                })?;
            dirs.push(real);
        }
        Ok(Self {
            changes,
            _watcher: watcher,
            watched: dirs,
        })
    }

    /// The directories watched, by their real paths.
    #[must_use]
    pub fn watched(&self) -> &[PathBuf] {
        &self.watched
    }

    /// Waits for a change, then for the directory to settle.
    pub async fn changed(&mut self) {
        if self.changes.recv().await.is_none() {
            // The watcher is gone: never report a change again.
            std::future::pending::<()>().await;
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(SETTLE) => return,
                more = self.changes.recv() => if more.is_none() { return },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_writes_is_one_change_and_links_are_followed() {
        let root = std::env::temp_dir().join(format!("vigie-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let shared = root.join("shared-catalog");
        let policy = root.join("policy");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::create_dir_all(&policy).unwrap();
        std::os::unix::fs::symlink(&shared, policy.join("catalog")).unwrap();
        let mut watch = PolicyWatch::new(&policy).unwrap();
        assert_eq!(watch.watched().len(), 2);

        for i in 0..5 {
            std::fs::write(policy.join("policy.toml"), format!("# {i}\n")).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("a change is reported");
        // The burst was one change: nothing more is pending.
        assert!(
            tokio::time::timeout(SETTLE * 2, watch.changed())
                .await
                .is_err()
        );
        // A file of the linked catalog counts too.
        std::fs::write(shared.join("zoom.toml"), "id = \"zoom\"\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("a change in the linked catalog is reported");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
