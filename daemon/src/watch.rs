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
    watcher: RecommendedWatcher,
    /// The policy directory, as given.
    dir: PathBuf,
    watched: Vec<PathBuf>,
}

impl PolicyWatch {
    /// Watches `dir`, its `catalog/` and `geoip/`: each on its own and by its real path, since
    /// a link (the examples link the shipped catalog) is not followed by a recursive watch.
    pub fn new(dir: &Path) -> Result<Self, WatchError> {
        let (tx, changes) = mpsc::channel(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
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
        let mut watch = Self {
            changes,
            watcher,
            dir: dir.to_owned(),
            watched: Vec::new(),
        };
        watch.follow()?;
        Ok(watch)
    }

    /// The real paths of the directory, its `catalog/` and `geoip/` as they are now: each on
    /// its own and by its real path, since a link (the examples link the shipped catalog) is
    /// not followed by a recursive watch. A directory that does not exist is left out.
    ///
    /// The policy directory given through a link (`--policy /etc/vigie/current`, switched to
    /// each new release) is watched where it points, and the directory holding the link too:
    /// the switch itself is a change there (other changes there reload a policy that did not
    /// change, which the daemon sees and keeps).
    fn real_dirs(&self) -> Vec<PathBuf> {
        let links = self
            .dir
            .ancestors()
            .filter(|a| {
                a.symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
            })
            .filter_map(|link| link.parent().map(Path::to_path_buf));
        let mut dirs = Vec::new();
        for path in [
            self.dir.clone(),
            self.dir.join("catalog"),
            self.dir.join("geoip"),
        ]
        .into_iter()
        .chain(links)
        {
            if let Ok(real) = std::fs::canonicalize(&path)
                && !dirs.contains(&real)
            {
                dirs.push(real);
            }
        }
        dirs
    }

    /// Watches the directories where their links point now, and no longer where they pointed:
    /// an operator who switches `catalog` to another directory (`ln -sfn`, or a
    /// configuration manager's atomic link swap) expects the next edit there to count, and
    /// a directory created after the start (`geoip/`) is watched from then on. The daemon calls
    /// it after every reload, whatever asked for it (a SIGHUP right after `ln -sfn` ends the
    /// wait for the directory to settle). A directory that cannot be watched is said, and the
    /// others are watched still.
    pub fn refresh(&mut self) {
        if let Err(e) = self.follow() {
            tracing::warn!("{e}");
        }
    }

    fn follow(&mut self) -> Result<(), WatchError> {
        let now = self.real_dirs();
        for gone in self.watched.iter().filter(|d| !now.contains(d)) {
            // The directory may be gone already, which ended its watch.
            let _ = self.watcher.unwatch(gone);
        }
        // Every directory again, not only new ones: one deleted and made again at the same
        // path (`rm -r catalog && cp -r new catalog`) lost its watch with its inode.
        self.watched.clear();
        let mut failed = None;
        for dir in now {
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => self.watched.push(dir),
                Err(source) => failed = Some(WatchError::Watch { path: dir, source }),
            }
        }
        failed.map_or(Ok(()), Err)
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
                () = tokio::time::sleep(SETTLE) => break,
                more = self.changes.recv() => if more.is_none() { break },
            }
        }
        // The change may have moved a link: the next ones are watched where it points now. A
        // directory that cannot be watched any more is said, and the change still reported:
        // the reload that follows shows what is wrong with the files.
        self.refresh();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty directory of its own for one test.
    fn fresh_root(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("vigie-watch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    /// Waits for the watch to report a change; fails with `what` if none comes.
    async fn reported(watch: &mut PolicyWatch, what: &str) {
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .unwrap_or_else(|_| panic!("{what} is not reported"));
    }

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
        reported(&mut watch, "a change").await;
        // The burst was one change: nothing more is pending.
        assert!(
            tokio::time::timeout(SETTLE * 2, watch.changed())
                .await
                .is_err()
        );
        // A file of the linked catalog counts too.
        std::fs::write(shared.join("zoom.toml"), "id = \"zoom\"\n").unwrap();
        reported(&mut watch, "a change in the linked catalog").await;
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn a_switched_link_is_followed_to_its_new_directory() {
        let root = fresh_root("switch");
        let (first, second, policy) = (root.join("v1"), root.join("v2"), root.join("policy"));
        for dir in [&first, &second, &policy] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::os::unix::fs::symlink(&first, policy.join("catalog")).unwrap();
        let mut watch = PolicyWatch::new(&policy).unwrap();

        // `ln -sfn v2 catalog`: a new link renamed over the old one.
        std::os::unix::fs::symlink(&second, policy.join("catalog.new")).unwrap();
        std::fs::rename(policy.join("catalog.new"), policy.join("catalog")).unwrap();
        reported(&mut watch, "the switch").await;
        let second_real = std::fs::canonicalize(&second).unwrap();
        assert!(
            watch.watched().contains(&second_real),
            "{:?}",
            watch.watched()
        );
        assert!(
            !watch
                .watched()
                .contains(&std::fs::canonicalize(&first).unwrap())
        );

        // An edit in the directory the link points to now counts; one in the old does not.
        std::fs::write(first.join("zoom.toml"), "id = \"zoom\"\n").unwrap();
        assert!(
            tokio::time::timeout(SETTLE * 3, watch.changed())
                .await
                .is_err(),
            "the old directory is no longer watched"
        );
        std::fs::write(second.join("zoom.toml"), "id = \"zoom\"\n").unwrap();
        reported(
            &mut watch,
            "a change in the directory the link points to now is reported",
        )
        .await;
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn a_catalog_replaced_by_a_copy_is_watched_again() {
        let root = fresh_root("copy");
        std::fs::create_dir_all(root.join("catalog")).unwrap();
        let mut watch = PolicyWatch::new(&root).unwrap();
        std::fs::remove_dir_all(root.join("catalog")).unwrap();
        std::fs::create_dir(root.join("catalog")).unwrap();
        reported(&mut watch, "the replacement").await;
        std::fs::write(root.join("catalog").join("zoom.toml"), b"x").unwrap();
        reported(&mut watch, "an edit in the new catalog").await;
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn a_directory_made_after_the_start_is_watched() {
        let root = fresh_root("late");
        let mut watch = PolicyWatch::new(&root).unwrap();
        assert_eq!(watch.watched().len(), 1);
        std::fs::create_dir(root.join("geoip")).unwrap();
        reported(&mut watch, "the new directory").await;
        std::fs::write(root.join("geoip").join("countries.mmdb"), b"x").unwrap();
        reported(&mut watch, "a file written in it").await;
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn a_policy_directory_given_through_a_switched_link_is_followed() {
        let root = fresh_root("release");
        let (first, second) = (root.join("release-1"), root.join("release-2"));
        for dir in [&first, &second] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let current = root.join("current");
        std::os::unix::fs::symlink(&first, &current).unwrap();
        let mut watch = PolicyWatch::new(&current).unwrap();

        // A deploy switches `current` to the next release (a new link renamed over it).
        std::os::unix::fs::symlink(&second, root.join("current.new")).unwrap();
        std::fs::rename(root.join("current.new"), &current).unwrap();
        reported(&mut watch, "the switch").await;
        let second_real = std::fs::canonicalize(&second).unwrap();
        assert!(
            watch.watched().contains(&second_real),
            "{:?}",
            watch.watched()
        );

        // Edits in the new release count.
        std::fs::write(second.join("policy.toml"), "# edited\n").unwrap();
        reported(
            &mut watch,
            "an edit in the release the link points to now is reported",
        )
        .await;
        std::fs::remove_dir_all(&root).unwrap();
    }
}
