//! The event writer: reads the kernel's event ring, names and aggregates the events, and hands
//! their lines to the sink thread (see `sink`), which alone waits for the sink. This task never
//! blocks on the sink: a sink that takes nothing costs lines (counted), never a tokio worker or
//! the daemon's stop.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::oneshot, task::JoinHandle};
use tracing::{error, warn};

use super::{
    FlowRecord, Namer,
    aggregate::Aggregator,
    sink::{Finished, QUEUE_LINES, SinkThread},
};
use crate::metrics::Metrics;

/// Records the event writer reads at most when the daemon stops (the 1 MiB ring holds some
/// 10,000).
const LAST_DRAIN: usize = 1 << 16;

/// Records read at most before the writer's loop looks at its other duties (the stop, closing
/// aggregation windows): under a flood faster than it reads, the ring never empties.
const READ_BATCH: usize = 4096;

/// How long a stopping daemon waits for the sink to take the event writer's last lines.
const EVENTS_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the sink may keep its queue full before lines are dropped rather than waited for.
const STALL: Duration = Duration::from_secs(1);

/// The pause before reading the ring again while the sink's queue is full.
const SINK_FULL_PAUSE: Duration = Duration::from_millis(10);

/// How often the ring is read whether or not the kernel woke the writer: the programs wake it
/// for a CPU's first event of a scheduler tick (`limits::EVENT_WAKE_INTERVAL_NS`), so the
/// tick's later events, with none after them, wait for this poll; so does an event another CPU
/// was still writing when a wakeup's read reached it.
const POLL: Duration = Duration::from_millis(50);

/// How a read of the ring ended.
enum Drained {
    /// The ring is empty.
    All,
    /// The limit was reached: the ring may hold more.
    More,
    /// The sink's queue is full: the rest waits in the ring.
    SinkFull,
}

/// The namer's lock was poisoned: a policy swap panicked while naming, names are moot.
#[derive(Debug, thiserror::Error)]
#[error("the event namer failed")]
struct NamerPoisoned;

/// Reads the event ring, names, aggregates and writes the events.
pub struct EventWriter {
    sink: SinkThread,
    namer: Arc<Mutex<Namer>>,
    aggregator: Aggregator,
    metrics: Metrics,
}

/// A running event writer, to stop.
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl EventWriter {
    /// Starts the sink thread on `sink` and the task that reads `ring` (within the tokio
    /// runtime); repeats are folded over `window`.
    pub fn start(
        sink: Box<dyn Write + Send>,
        ring: RingBuf<MapData>,
        namer: Arc<Mutex<Namer>>,
        window: Duration,
        metrics: Metrics,
    ) -> std::io::Result<Running> {
        let writer = Self {
            sink: SinkThread::spawn(sink, QUEUE_LINES, metrics.clone())?,
            namer,
            aggregator: Aggregator::new(window),
            metrics,
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(writer.run(ring, stopped));
        Ok(Running { stop, task })
    }

    /// Runs until `stop` fires (or is dropped); then reads the ring once more and closes
    /// every aggregation window, so that what was counted is written.
    async fn run(mut self, ring: RingBuf<MapData>, mut stop: oneshot::Receiver<()>) {
        // `AsyncFd::new` is deprecated for lack of I/O safety; here the ring buffer owns its
        // descriptor for as long as the AsyncFd lives, which is what the safe wrapper needs.
        #[allow(deprecated)]
        let ring = AsyncFd::new(ring);
        let mut ring = match ring {
            Ok(fd) => fd,
            Err(e) => return error!("watching the event ring: {e}"),
        };
        // Closing aggregation windows a second late at most is precise enough for a log.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut full_since = None;
        let mut behind = false;
        loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let Ok(mut guard) = guard else { return };
                    match self.read(guard.get_inner_mut(), &mut full_since) {
                        Err(e) => return error!("{e}; events are no longer written"),
                        Ok(Drained::All) => guard.clear_ready(),
                        // Still ready: the next turn of the loop reads on, after a look at
                        // the stop and the windows.
                        Ok(Drained::More) => {}
                        Ok(Drained::SinkFull) => {
                            drop(guard);
                            tokio::time::sleep(SINK_FULL_PAUSE).await;
                        }
                    }
                }
                // The poll, or a read that stopped at its batch: read on, whatever the
                // ring's readiness says.
                () = async {}, if behind => {
                    match self.read(ring.get_mut(), &mut full_since) {
                        Err(e) => return error!("{e}; events are no longer written"),
                        Ok(drained) => behind = matches!(drained, Drained::More),
                    }
                }
                _ = poll.tick() => behind = true,
                _ = tick.tick() => {
                    let summaries = self.aggregator.expire(Instant::now());
                    self.send_summaries(&summaries);
                }
                _ = &mut stop => break,
            }
        }
        if let Err(e) = self.drain_at_most(ring.get_mut(), LAST_DRAIN, false) {
            error!("reading the last flow events: {e}");
        }
        let summaries = self.aggregator.close_all();
        self.send_summaries(&summaries);
        if let Finished::TimedOut { pending } = self.sink.finish(EVENTS_FLUSH_TIMEOUT).await {
            warn!(
                "the event sink did not take the last {pending} flow event lines within \
                 {EVENTS_FLUSH_TIMEOUT:?}; stopping without them"
            );
        }
    }

    /// Reads what the ring holds. A burst waits in the kernel's ring while the sink catches up
    /// (`full_since` says since when it is full); a sink stalled longer than `STALL` costs
    /// lines (counted) instead, so that the ring keeps room for what comes after.
    fn read(
        &mut self,
        ring: &mut RingBuf<MapData>,
        full_since: &mut Option<Instant>,
    ) -> Result<Drained, NamerPoisoned> {
        let stalled = full_since.is_some_and(|t| t.elapsed() >= STALL);
        let drained = self.drain_at_most(ring, READ_BATCH, !stalled)?;
        match drained {
            Drained::All | Drained::More => *full_since = None,
            Drained::SinkFull => {
                full_since.get_or_insert_with(Instant::now);
            }
        }
        Ok(drained)
    }

    fn send_summaries(&mut self, summaries: &[FlowRecord]) {
        for summary in summaries {
            self.metrics.suppressed(summary.suppressed);
            self.send(summary);
        }
    }

    /// Reads at most `limit` records: a read must end even under a flood of new flows. With `wait_for_room`, stops while the sink's queue is full (the records wait
    /// in the ring) and says so.
    fn drain_at_most(
        &mut self,
        ring: &mut RingBuf<MapData>,
        limit: usize,
        wait_for_room: bool,
    ) -> Result<Drained, NamerPoisoned> {
        for _ in 0..limit {
            if wait_for_room && self.sink.is_full() {
                return Ok(Drained::SinkFull);
            }
            let Some(item) = ring.next() else {
                return Ok(Drained::All);
            };
            let Some(event) = super::decode(&item) else {
                continue;
            };
            let record = self
                .namer
                .lock()
                .map(|namer| namer.record(&event))
                .map_err(|_| NamerPoisoned)?;
            self.metrics.flow_event(&record);
            if let Some(record) = self.aggregator.offer(record, Instant::now()) {
                self.send(&record);
            }
        }
        Ok(Drained::More)
    }

    fn send(&mut self, record: &FlowRecord) {
        let line = serde_json::to_string(record).unwrap_or_default();
        self.sink.send(line);
    }
}

impl Running {
    /// Tells the writer to stop, and waits for it: it reads what the ring still holds, reports
    /// the repeats its open windows counted, and gives the sink `EVENTS_FLUSH_TIMEOUT` to take
    /// the last lines; a sink that takes nothing delays the stop by that much, no more.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            error!("the event writer failed: {e}");
        }
    }
}
