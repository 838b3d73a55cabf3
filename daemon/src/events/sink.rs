//! The event sink's own thread, the only code that writes to the sink (a file, standard
//! output). A sink that stops taking data (a pipe nobody reads, a full or stalled disk, a hung
//! NFS server) then blocks that thread alone: the daemon hands it lines through a bounded queue
//! without ever waiting, drops and counts lines while the queue is full, and waits a bounded
//! time for the last lines when it stops. The thread is never joined: one blocked in `write`
//! does not keep the process from exiting once `main` returns, and it is no worker of the
//! tokio runtime, whose shutdown would wait for it.

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    time::Duration,
};

use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::metrics::{DropReason, Metrics};

/// Lines waiting for the sink at most: some seconds of a busy gateway's events (a few hundred
/// bytes each, a couple of MiB in all), enough to ride out a slow disk without holding memory
/// for a sink that stopped.
pub const QUEUE_LINES: usize = 4096;

/// Opens the event sink: `-` for standard output, else a file appended to (created if
/// missing). A FIFO that no process reads yet is not waited for here (opening it would block
/// the start until a reader comes, before anything is enforced): it is opened by the sink's
/// thread on its first line, and lines are counted as dropped while nobody reads.
pub fn open(target: &str) -> std::io::Result<Box<dyn Write + Send>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if target == "-" {
        return Ok(Box::new(std::io::stdout()));
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    match options.clone().custom_flags(libc::O_NONBLOCK).open(target) {
        Ok(file) => {
            // Writes block again once open: the thread is there to wait for them.
            nix::fcntl::fcntl(
                &file,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_APPEND),
            )
            .map_err(std::io::Error::from)?;
            Ok(Box::new(file))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            warn!(
                target,
                "no process reads the event FIFO yet: flow events are written once one does"
            );
            Ok(Box::new(LateFifo {
                options,
                path: target.into(),
                file: None,
            }))
        }
        Err(e) => Err(e),
    }
}

/// A FIFO opened on its first write, by the sink's thread (the open waits for a reader).
struct LateFifo {
    options: std::fs::OpenOptions,
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
}

impl Write for LateFifo {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.file.is_none() {
            self.file = Some(self.options.open(&self.path)?);
            info!(path = %self.path.display(), "the event FIFO has a reader");
        }
        self.file.as_mut().map_or(Ok(0), |f| f.write(bytes))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

/// The daemon's end of the sink thread.
pub struct SinkThread {
    lines: SyncSender<String>,
    /// Fires when the thread has handled every line it was given and ends (dropped unsent if it
    /// panicked).
    ended: oneshot::Receiver<()>,
    /// Lines handed to the thread and not yet written (or given up on).
    pending: Arc<AtomicUsize>,
    capacity: usize,
    metrics: Metrics,
    /// Lines dropped since the sink last fell behind; None while it keeps up. The log says
    /// when a stall begins and when it ends, not once per line.
    stall: Option<u64>,
}

/// How the sink thread ended when the daemon stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// Every line was handled: written, or given up on after the sink failed.
    Written,
    /// The sink had not taken `pending` lines when the time was up; the thread is left behind,
    /// blocked, and ends with the process.
    TimedOut { pending: usize },
}

impl SinkThread {
    /// Starts the thread that writes to `sink`, one line at a time, flushed (operators tail
    /// the file); at most `capacity` lines wait for it.
    pub fn spawn(
        sink: Box<dyn Write + Send>,
        capacity: usize,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let (lines, queue) = mpsc::sync_channel(capacity);
        let (done, ended) = oneshot::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            sink: Some(sink),
            pending: Arc::clone(&pending),
            metrics: metrics.clone(),
        };
        // The handle is dropped: nothing ever joins this thread (see the module documentation).
        std::thread::Builder::new()
            .name("vigie-events".into())
            .spawn(move || {
                writer.run(&queue);
                // The daemon may have stopped waiting already.
                let _ = done.send(());
            })?;
        Ok(Self {
            lines,
            ended,
            pending,
            capacity,
            metrics,
            stall: None,
        })
    }

    /// Hands `line` to the thread, never waiting: when the queue is full the line is dropped
    /// and counted (`vigie_flow_events_dropped_total{reason="slow"}`).
    pub fn send(&mut self, line: String) {
        // Counted before the thread can see the line, so that its decrement never comes first.
        self.pending.fetch_add(1, Ordering::Relaxed);
        match self.lines.try_send(line) {
            Ok(()) => self.accepted(),
            Err(TrySendError::Full(_)) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                self.metrics.flow_events_dropped(DropReason::Slow, 1);
                if let Some(dropped) = &mut self.stall {
                    *dropped += 1;
                } else {
                    warn!(
                        queued = self.capacity,
                        "the event sink takes no more lines (a pipe nobody reads? a stalled \
                         disk?): flow events are dropped, and counted, until it catches up"
                    );
                    self.stall = Some(1);
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                // The thread is gone (it panicked, which its message reported): nothing writes.
                self.pending.fetch_sub(1, Ordering::Relaxed);
                self.metrics.flow_events_dropped(DropReason::Failed, 1);
            }
        }
    }

    /// Ends a stall once the thread has written half the queue: a sink that takes a line now
    /// and then is still stalled, and one warning covers it.
    fn accepted(&mut self) {
        if let Some(dropped) = self.stall
            && self.pending.load(Ordering::Relaxed) <= self.capacity / 2
        {
            info!(dropped, "the event sink takes lines again");
            self.stall = None;
        }
    }

    /// Whether the queue holds as many lines as it can.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.pending() >= self.capacity
    }

    /// Lines handed to the thread and not yet written.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// No more lines: waits up to `within` for the thread to write those it holds.
    pub async fn finish(self, within: Duration) -> Finished {
        let Self {
            lines,
            ended,
            pending,
            ..
        } = self;
        // The thread's loop ends once the queue is empty and this end is gone.
        drop(lines);
        match tokio::time::timeout(within, ended).await {
            Ok(_) => Finished::Written,
            Err(_) => Finished::TimedOut {
                pending: pending.load(Ordering::Relaxed),
            },
        }
    }
}

/// The thread's side: owns the sink.
struct Writer {
    /// None once a write failed: the sink is closed and lines are counted, not written.
    sink: Option<Box<dyn Write + Send>>,
    pending: Arc<AtomicUsize>,
    metrics: Metrics,
}

impl Writer {
    /// Writes every line until the daemon's end is dropped and the queue is empty. After a
    /// failure (a closed pipe, a full disk) it keeps taking lines without writing them, so
    /// that the daemon never sees a full queue because of it.
    fn run(mut self, queue: &Receiver<String>) {
        for mut line in queue {
            // One write per line: a line cut between two writes (the process ending in
            // between) would run into the next daemon's first line.
            line.push('\n');
            if let Some(sink) = &mut self.sink
                && let Err(e) = sink.write_all(line.as_bytes()).and_then(|()| sink.flush())
            {
                error!(
                    "writing flow events: {e}; they are no longer written (counted as \
                     dropped), enforcement goes on"
                );
                self.sink = None;
            }
            if self.sink.is_none() {
                self.metrics.flow_events_dropped(DropReason::Failed, 1);
            }
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        path::PathBuf,
        sync::{Mutex, mpsc::RecvTimeoutError},
        time::Instant,
    };

    use super::*;

    /// A sink that never takes a byte: each write tells the test it began, then waits for a
    /// release that never comes while the test runs (a pipe nobody reads).
    struct Stuck {
        entered: mpsc::Sender<()>,
        release: Receiver<()>,
    }

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _ = self.entered.send(());
            // Released only when the test drops its end, after its assertions.
            let _ = self.release.recv();
            Err(std::io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A sink that keeps what it is given, and how many flushes it saw.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Kept {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().0.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.0.lock().unwrap().1 += 1;
            Ok(())
        }
    }

    /// A sink whose writes fail, as a pipe whose reader left.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn metrics() -> Metrics {
        Metrics::new(PathBuf::from("/nonexistent/vigie-pins"))
    }

    fn dropped(metrics: &Metrics, reason: &str) -> u64 {
        let text = metrics.render();
        let series = format!("vigie_flow_events_dropped_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series}in\n{text}"))
    }

    /// Runs `f` on another thread and fails if it does not return within `limit`: a blocking
    /// call shows as a failed test rather than a hung one.
    fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        match rx.recv_timeout(limit) {
            Ok(value) => value,
            Err(RecvTimeoutError::Timeout) => panic!("blocked for more than {limit:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("panicked"),
        }
    }

    #[test]
    fn a_sink_that_never_takes_a_line_holds_neither_the_sender_nor_the_stop() {
        const CAPACITY: usize = 8;
        const SENT: usize = 100;
        let metrics = metrics();
        let (entered, write_began) = mpsc::channel();
        let (release, released) = mpsc::channel();
        let sink = Stuck {
            entered,
            release: released,
        };
        let mut thread = SinkThread::spawn(Box::new(sink), CAPACITY, metrics.clone()).unwrap();
        thread.send("first".to_owned());
        // The thread holds the first line, blocked in write; the queue is empty again.
        write_began.recv_timeout(Duration::from_secs(5)).unwrap();

        let thread = within(Duration::from_secs(5), move || {
            for i in 1..SENT {
                thread.send(format!("line {i}"));
            }
            thread
        });
        assert_eq!(
            dropped(&metrics, "slow"),
            (SENT - 1 - CAPACITY) as u64,
            "the lines beyond the queue are dropped and counted"
        );
        assert_eq!(thread.pending(), 1 + CAPACITY);
        assert!(thread.stall.is_some(), "the stall is known");

        // The stop waits its bounded time, no more, and says what the sink never took.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let started = Instant::now();
        let finished = within(Duration::from_secs(5), move || {
            runtime.block_on(thread.finish(Duration::from_millis(300)))
        });
        assert_eq!(
            finished,
            Finished::TimedOut {
                pending: 1 + CAPACITY
            }
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // Only now may the thread go (its write fails, it counts the rest and ends).
        drop(release);
    }

    #[test]
    fn every_line_reaches_a_sink_that_keeps_up_flushed_one_by_one() {
        let metrics = metrics();
        let kept = Kept::default();
        let mut thread = SinkThread::spawn(Box::new(kept.clone()), 4, metrics.clone()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        for i in 0..3 {
            thread.send(format!("{{\"n\":{i}}}"));
        }
        let finished = runtime.block_on(thread.finish(Duration::from_secs(5)));
        assert_eq!(finished, Finished::Written);
        let (text, flushes) = kept.0.lock().unwrap().clone();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n"
        );
        assert_eq!(flushes, 3, "one flush a line, for those who tail the file");
        assert_eq!(dropped(&metrics, "slow"), 0);
        assert_eq!(dropped(&metrics, "failed"), 0);
    }

    #[test]
    fn after_a_write_error_lines_are_counted_and_the_queue_never_fills() {
        const CAPACITY: usize = 2;
        let metrics = metrics();
        let mut thread = SinkThread::spawn(Box::new(Broken), CAPACITY, metrics.clone()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        for i in 0..50 {
            thread.send(format!("line {i}"));
            // The thread keeps taking lines: given time, the queue has room for each.
            let deadline = Instant::now() + Duration::from_secs(5);
            while thread.pending() > 0 {
                assert!(Instant::now() < deadline, "the thread stopped taking lines");
                std::thread::yield_now();
            }
        }
        assert_eq!(
            runtime.block_on(thread.finish(Duration::from_secs(5))),
            Finished::Written
        );
        assert_eq!(dropped(&metrics, "failed"), 50);
        assert_eq!(dropped(&metrics, "slow"), 0);
    }

    #[test]
    fn a_fifo_nobody_reads_yet_does_not_hold_the_open() {
        let dir = std::env::temp_dir().join(format!("vigie-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("events");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Opened at once (a plain open waits for a reader, here forever).
        let (opened, done) = std::sync::mpsc::channel();
        let target = fifo.to_string_lossy().into_owned();
        std::thread::spawn(move || {
            let _ = opened.send(open(&target));
        });
        let mut sink = done
            .recv_timeout(Duration::from_secs(5))
            .expect("the open waited for a reader")
            .unwrap();
        // A reader comes; the first line opens the FIFO and reaches it.
        let reader = std::thread::spawn({
            let fifo = fifo.clone();
            move || std::fs::read_to_string(fifo).unwrap()
        });
        sink.write_all(b"{\"line\":1}\n").unwrap();
        sink.flush().unwrap();
        drop(sink);
        assert_eq!(reader.join().unwrap(), "{\"line\":1}\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_sink_appends_and_is_left_blocking() {
        let path = std::env::temp_dir().join(format!("vigie-sink-{}", std::process::id()));
        std::fs::write(&path, "before\n").unwrap();
        let mut sink = open(&path.to_string_lossy()).unwrap();
        sink.write_all(b"after\n").unwrap();
        drop(sink);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "before\nafter\n");
        std::fs::remove_file(&path).unwrap();
    }
}
