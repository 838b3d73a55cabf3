//! Child processes that the lab started, killed when the last handle drops (and by the
//! topology's drop), so that no peer or daemon outlives its namespaces.

use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A shared handle on a child process.
#[derive(Clone, Debug)]
pub struct Process {
    inner: Arc<Mutex<Child>>,
    pid: u32,
    what: Arc<str>,
}

impl Process {
    #[must_use]
    pub fn new(child: Child, what: &str) -> Self {
        let pid = child.id();
        Self {
            inner: Arc::new(Mutex::new(child)),
            pid,
            what: what.into(),
        }
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What this process is, for messages.
    #[must_use]
    pub fn what(&self) -> &str {
        &self.what
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[must_use]
    /// Takes the child's piped stdout, if any and not taken yet.
    pub fn take_stdout(&self) -> Option<std::process::ChildStdout> {
        self.child().stdout.take()
    }

    /// Its exit status if it has exited (reaping it), None while it runs.
    pub fn try_wait(&self) -> anyhow::Result<Option<ExitStatus>> {
        self.child()
            .try_wait()
            .with_context(|| format!("waiting for {}", self.what))
    }

    /// Sends `signal` unless the process has already been reaped.
    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let mut child = self.child();
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.pid).context("pid out of range")?;
        // SAFETY: kill has no memory preconditions; the child is not reaped (checked above while
        // holding the lock), so its pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("signalling {} (pid {pid})", self.what));
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`. Returns its exit status.
    pub fn terminate(&self, grace: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        if let Some(status) = self.wait_timeout(grace)? {
            return Ok(status);
        }
        self.kill()
    }

    /// SIGKILL and reap.
    pub fn kill(&self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child();
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        child
            .kill()
            .with_context(|| format!("killing {}", self.what))?;
        child
            .wait()
            .with_context(|| format!("reaping {}", self.what))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Only the last handle kills: the topology keeps one of each.
        if Arc::strong_count(&self.inner) == 1
            && let Err(e) = self.kill()
        {
            crate::report::warn(format_args!("{e:#}"));
        }
    }
}
