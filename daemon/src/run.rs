//! `vigie run`: the daemon. Loads or adopts the datapath, applies the policy, writes flow
//! events, reloads on SIGHUP, and leaves enforcement in place when it stops.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};
use tracing::{error, info, warn};
use vigie_common::{action, maps as names};

use crate::{
    catalog::Catalog,
    cli::{FailureAction, ObservabilityArgs, Pseudonymise, RunArgs},
    compiled::CompiledPolicy,
    events::{self, Namer, pseudonym::Pseudonymiser, writer::EventWriter},
    geoip::GeoIp,
    learning::{self, Learner, Lesson},
    loader,
    maps::DatapathMaps,
    metrics::{self, Metrics, ReloadResult, WebConfig},
    pins::{self, State},
    source::PolicySource,
    watch::PolicyWatch,
};

/// Exit status for an invalid configuration (`EX_USAGE`), as other daemons use it.
pub const EXIT_INVALID_CONFIG: i32 = 64;

struct Daemon {
    maps: DatapathMaps,
    source: PolicySource,
    pin_dir: PathBuf,
    state: State,
    namer: Arc<Mutex<Namer>>,
    metrics: Metrics,
    /// The policy in force, to tell a change that matters from one that does not.
    current: Option<Arc<CompiledPolicy>>,
    /// The country database events use, by path (opened again only when it changes).
    events_geoip: Option<PathBuf>,
    /// Learns from DNS responses and QUIC Initials; told of each policy before its swap.
    learner: Arc<Mutex<Learner>>,
}

pub async fn run(args: RunArgs) -> Result<i32> {
    let source = PolicySource::resolve(args.policy.policy.as_deref());
    let compilation = match source.compile() {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            error!(policy = %source.describe(), "the policy is invalid; nothing was changed");
            return Ok(EXIT_INVALID_CONFIG);
        }
    };
    for warning in compilation.warnings_today() {
        warn!("{warning}");
    }
    // Signals are taken from the start: a SIGHUP while the programs load (a reload just after
    // a start) would otherwise end the process by default; a stop request is served as soon
    // as the daemon is up.
    let signals = Signals::new()?;
    loader::check_interfaces(&args.ifaces)?;
    let pin_dir = args.pins.pin_dir.clone();
    // One daemon per pin directory, claimed before anything in the kernel is touched.
    let _claim = pins::lock_daemon(&pin_dir)?;
    // Then what may fail outside the kernel (a key file, the event sink, the metrics address
    // taken): a start that fails after attaching would leave programs in place, with no
    // policy if none was in force.
    let observe = &args.observability;
    let metrics = Metrics::new(pin_dir.clone());
    let pseudonymiser = pseudonymiser(observe)?;
    let sink = events::sink::open(&args.events)
        .with_context(|| format!("opening the event sink {}", args.events))?;
    let server = if observe.no_metrics {
        None
    } else {
        let web = match &observe.web_config {
            Some(path) => WebConfig::load(path)?,
            None => WebConfig::default(),
        };
        Some(tokio::spawn(
            metrics::serve(observe.metrics, metrics.clone(), web).await?,
        ))
    };
    loader::prepare_pin_dir(&pin_dir)?;
    let failure = match args.on_failure {
        FailureAction::Allow => action::ALLOW,
        FailureAction::Block => action::DROP,
    };
    // Maps pinned by an earlier daemon are adopted with what they hold; otherwise they are new.
    let fresh = !pins::maps_pinned(&pin_dir)?;
    // The state is saved before each policy goes into the kernel: a place where it cannot be
    // saved is found now, before any program is attached.
    let mut state = pins::read_state(&pin_dir)?.unwrap_or_default();
    pins::write_state(&pin_dir, &state).context("saving the daemon's state")?;
    info!(pin_dir = %pin_dir.display(), "loading the datapath");
    let mut ebpf = loader::load(Some(&pin_dir), failure).context("loading the datapath")?;
    for iface in &args.ifaces {
        for (attachment, adopted) in loader::attach(&mut ebpf, &pin_dir, iface, args.hook)? {
            let verb = if adopted { "adopted" } else { "attached" };
            info!(iface = %attachment.iface, point = %attachment.point, program = %attachment.program, "{verb}");
            if !state.attachments.contains(&attachment) {
                state.attachments.push(attachment);
            }
        }
    }
    let maps = DatapathMaps::take(&mut ebpf, fresh)?;
    let learner = Arc::new(Mutex::new(maps.learner()?));
    let payloads = ebpf
        .take_map(names::PAYLOADS)
        .context("the kernel object has no payload ring")?;
    let payloads = RingBuf::try_from(payloads).context("opening the payload ring")?;
    let ring = ebpf
        .take_map(names::EVENTS)
        .context("the kernel object has no event ring")?;
    let ring = RingBuf::try_from(ring).context("opening the event ring")?;
    let mut daemon = Daemon {
        maps,
        source,
        pin_dir,
        state,
        namer: Arc::new(Mutex::new(Namer::with_pseudonymiser(pseudonymiser))),
        metrics: metrics.clone(),
        current: None,
        events_geoip: None,
        learner: Arc::clone(&learner),
    };
    daemon.name_countries_with(compilation.events_geoip.as_deref());
    daemon.apply_first(compilation)?;
    let events = EventWriter::start(
        sink,
        ring,
        Arc::clone(&daemon.namer),
        std::time::Duration::from_secs(observe.event_window),
        metrics,
    )
    .context("starting the event sink's thread")?;
    let reader = PayloadReader {
        learner,
        metrics: daemon.metrics.clone(),
    };
    let learning = tokio::spawn(reader.run(payloads));
    let outcome = daemon.serve(signals).await;
    events.stop().await;
    learning.abort();
    if let Some(server) = server {
        server.abort();
    }
    daemon.state.daemon_pid = None;
    pins::write_state(&daemon.pin_dir, &daemon.state)?;
    info!("stopped; enforcement stays in place (vigie detach removes it)");
    // The object is dropped last: pinned links and maps keep the programs running.
    drop(ebpf);
    outcome.map(|()| 0)
}

impl Daemon {
    /// The first policy of this daemon; the generation an earlier daemon left in force is
    /// named too when it came from the same files (see `adopted_generation`).
    fn apply_first(&mut self, compilation: crate::policy::Compilation) -> Result<()> {
        let adopted = adopted_generation(
            &self.maps,
            self.state.policy_digest.as_deref(),
            &compilation,
        );
        self.apply(compilation.policy, &compilation.catalog)?;
        if let (Some(generation), Some(policy), Ok(mut namer)) =
            (adopted, self.current.as_ref(), self.namer.lock())
        {
            namer.insert(generation, Arc::clone(policy));
        }
        Ok(())
    }

    fn apply(&mut self, mut policy: CompiledPolicy, catalog: &Catalog) -> Result<()> {
        // Services keep the numbers the policy in force (or, at a start, the previous
        // daemon's) gave them: the kernel's flows and learned addresses hold those numbers.
        let previous = self.state.service_numbering.clone();
        if let Some(previous) = &previous
            && !policy.keep_service_numbers(previous)
        {
            warn!(
                "more services than the kernel numbers with those of removed services reserved: \
                 numbers of removed services are given again, and flows identified by name as \
                 one of them may be taken for a new service until they end"
            );
        }
        // Groups and rules keep theirs too: the kernel's counter rows (kept across reloads and
        // restarts), flows and events carry them, and are named after the policy in force.
        if let Some(previous) = &self.state.group_numbering
            && !policy.keep_group_numbers(previous)
        {
            warn!(
                "more groups than the kernel numbers with those of removed groups reserved: \
                 numbers of removed groups are given again, and what they counted may be \
                 exported under a new group's name"
            );
        }
        if let Some(previous) = &self.state.rule_numbering
            && !policy.keep_rule_numbers(previous)
        {
            warn!(
                "the rule numbers are exhausted: numbers of removed rules are given again, \
                 lowest first, and what they counted may be exported under a new rule's name"
            );
        }
        if self.current.as_deref() == Some(&policy) {
            info!("the policy is unchanged; the generation in force stays");
            return Ok(());
        }
        // The numbering is saved before the kernel holds it. It keeps every number the one in
        // force gave, so it is true whether the swap then succeeds or not; saved after, a
        // daemon killed in between would leave numbers in the kernel that the next one does
        // not know, and may give to other names. A state that cannot be saved refuses the
        // policy: the running one stays.
        let numbering_in_force = Numberings::of(&self.state);
        self.state.service_numbering = Some(policy.numbering_after(previous.as_deref()));
        self.state.group_numbering = Some(policy.group_numbering());
        self.state.rule_numbering = Some(policy.rule_numbering());
        if let Err(e) = pins::write_state(&self.pin_dir, &self.state) {
            numbering_in_force.restore(&mut self.state);
            return Err(e).context("saving the policy's numbering before it goes into the kernel");
        }
        let policy = Arc::new(policy);
        let namer = Arc::clone(&self.namer);
        let for_events = Arc::clone(&policy);
        let learner = Arc::clone(&self.learner);
        let for_learner = Arc::clone(&policy);
        let generation = self
            .maps
            .apply_announcing(&policy, move |generation, slot| {
                // Poisoned only if the event writer panicked: names are then moot.
                if let Ok(mut namer) = namer.lock() {
                    namer.insert(generation, for_events);
                }
                // Poisoned only if the payload reader panicked: learning has stopped then.
                if let Ok(mut learner) = learner.lock() {
                    learner.policy_written(slot, for_learner);
                }
            });
        let generation = match generation {
            Ok(generation) => generation,
            Err(e) => {
                // When numbers ran out (the warnings above), this policy's numbering gives some
                // numbers to other names: kept, it would misname what the kernel holds under
                // the policy still in force.
                numbering_in_force.restore(&mut self.state);
                let _ = pins::write_state(&self.pin_dir, &self.state);
                return Err(e).context("writing the policy into the kernel");
            }
        };
        self.current = Some(Arc::clone(&policy));
        self.metrics
            .applied(generation, Arc::clone(&policy), catalog);
        self.state.daemon_pid = Some(std::process::id());
        self.state.policy_digest = Some(policy.digest.clone());
        self.state.policy_source = Some(self.source.describe());
        // The policy is in force whatever happens here: a failure is no failed reload.
        if let Err(e) = pins::write_state(&self.pin_dir, &self.state) {
            warn!(
                "the policy is in force, but the daemon's state was not saved ({e}): \
                 `vigie status` shows the previous policy's digest and source until a later save"
            );
        }
        info!(
            generation,
            digest = %policy.digest,
            rules = policy.rules.len(),
            prefixes = policy.destinations_v4.len() + policy.destinations_v6.len(),
            source = %self.source.describe(),
            "policy applied"
        );
        Ok(())
    }

    /// Gives flow events the countries of `path`'s database (none without one). A database
    /// that does not open is logged and events go without countries: it never stops a policy.
    fn name_countries_with(&mut self, path: Option<&std::path::Path>) {
        if self.events_geoip.as_deref() == path {
            return;
        }
        let db = path.and_then(|p| match GeoIp::open(p) {
            Ok(db) => Some(Arc::new(db)),
            Err(e) => {
                warn!("flow events go without countries: {e}");
                None
            }
        });
        if let Ok(mut namer) = self.namer.lock() {
            namer.set_geoip(db);
        }
        self.events_geoip = path.map(std::path::Path::to_owned);
    }

    /// Waits for a stop signal; SIGHUP or a change in the policy directory recompiles and
    /// swaps the policy, keeping the running one when the files do not compile.
    async fn serve(&mut self, signals: Signals) -> Result<()> {
        let Signals {
            mut interrupt,
            mut terminate,
            mut hangup,
        } = signals;
        let mut watch = match &self.source {
            PolicySource::Dir(dir) => {
                let watch = PolicyWatch::new(dir)?;
                info!(dirs = ?watch.watched(), "watching the policy for changes");
                Some(watch)
            }
            PolicySource::Embedded => None,
        };
        loop {
            tokio::select! {
                _ = interrupt.recv() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
                _ = hangup.recv() => {
                    self.reload("SIGHUP");
                    // A link switched just before the SIGHUP: its new target is watched now.
                    if let Some(watch) = watch.as_mut() {
                        watch.refresh();
                    }
                }
                () = changed(watch.as_mut()) => self.reload("a change in the policy directory"),
            }
        }
    }

    fn reload(&mut self, cause: &str) {
        info!("reloading the policy after {cause}");
        match self.source.compile() {
            Ok(compilation) => {
                for warning in compilation.warnings_today() {
                    warn!("{warning}");
                }
                self.name_countries_with(compilation.events_geoip.as_deref());
                match self.apply(compilation.policy, &compilation.catalog) {
                    Ok(()) => self.metrics.reloaded(ReloadResult::Success),
                    Err(e) => {
                        self.metrics.reloaded(ReloadResult::Failed);
                        error!("reload failed, the running policy stays: {e:#}");
                    }
                }
            }
            Err(errors) => {
                self.metrics.reloaded(ReloadResult::Invalid);
                error!("reload refused, the running policy stays:\n{errors}");
            }
        }
    }
}

/// The numberings a state holds, kept to be put back when a policy does not go in.
struct Numberings {
    services: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    rules: Option<Vec<String>>,
}

impl Numberings {
    fn of(state: &pins::State) -> Self {
        Self {
            services: state.service_numbering.clone(),
            groups: state.group_numbering.clone(),
            rules: state.rule_numbering.clone(),
        }
    }

    fn restore(self, state: &mut pins::State) {
        state.service_numbering = self.services;
        state.group_numbering = self.groups;
        state.rule_numbering = self.rules;
    }
}

/// The signals the daemon serves: stop (SIGINT, SIGTERM) and reload (SIGHUP).
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// The next change of the watched policy, or never without a watch.
async fn changed(watch: Option<&mut PolicyWatch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

fn pseudonymiser(args: &ObservabilityArgs) -> Result<Option<Pseudonymiser>> {
    Ok(match (args.pseudonymise, &args.pseudonym_key) {
        (None, _) => None,
        (Some(Pseudonymise::Truncate), _) => Some(Pseudonymiser::Truncate),
        (Some(Pseudonymise::Hmac), Some(key)) => Some(Pseudonymiser::Keyed(
            std::fs::read(key).with_context(|| format!("reading {}", key.display()))?,
        )),
        (Some(Pseudonymise::Hmac), None) => {
            Some(Pseudonymiser::random().context("drawing a pseudonym key")?)
        }
    })
}

/// Reads the payload ring (DNS responses, QUIC Initials) into the learner, which writes what
/// they teach into the kernel; expires learned endpoints.
struct PayloadReader {
    learner: Arc<Mutex<Learner>>,
    metrics: Metrics,
}

impl PayloadReader {
    async fn run(self, ring: RingBuf<MapData>) {
        // As for the event ring (see `events::writer::EventWriter::run`).
        #[allow(deprecated)]
        let ring = AsyncFd::new(ring);
        let mut ring = match ring {
            Ok(fd) => fd,
            Err(e) => return error!("watching the payload ring: {e}; {STOPS}"),
        };
        let mut sweep = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = match guard {
                        Ok(guard) => guard,
                        Err(e) => return error!("the payload ring failed: {e}; {STOPS}"),
                    };
                    match self.drain(guard.get_inner_mut()) {
                        Drained::All => guard.clear_ready(),
                        // More waits: the sweep and the policy writer get the learner between
                        // batches (the ring stays readable, so this wakes again at once).
                        Drained::Batch => {
                            drop(guard);
                            tokio::task::yield_now().await;
                        }
                        Drained::Poisoned => return error!("the learner failed; {STOPS}"),
                    }
                }
                _ = sweep.tick() => {
                    let Ok(mut learner) = self.learner.lock() else {
                        return error!("the learner failed; {STOPS}");
                    };
                    learner.sweep(learning::monotonic_ns());
                    self.metrics.learning(learner.stats, learner.learned_count());
                }
            }
        }
    }

    /// Reads at most `PAYLOAD_BATCH` records under one lock of the learner.
    fn drain(&self, ring: &mut RingBuf<MapData>) -> Drained {
        let Ok(mut learner) = self.learner.lock() else {
            return Drained::Poisoned;
        };
        let mut drained = Drained::Batch;
        for _ in 0..PAYLOAD_BATCH {
            let Some(item) = ring.next() else {
                drained = Drained::All;
                break;
            };
            let stamp = learning::record::decode(&item).map(|p| p.timestamp_ns);
            let signal = match learner.payload(&item) {
                Lesson::Endpoints { learned } if learned > 0 => "dns",
                Lesson::QuicName { .. } => "quic",
                _ => continue,
            };
            if let Some(stamp) = stamp {
                self.metrics
                    .learning_delay(signal, learning::delay_since(stamp));
            }
        }
        self.metrics
            .learning(learner.stats, learner.learned_count());
        drained
    }
}

/// What the daemon says when the payload reader stops (enforcement goes on; QUIC flows are
/// then held back only until the kernel's deadline).
const STOPS: &str = "DNS learning and QUIC server names stop";

/// Records read from the payload ring under one lock of the learner: a flood of DNS answers
/// must not keep a policy swap (which tells the learner first) or the sweep waiting.
const PAYLOAD_BATCH: usize = 256;

enum Drained {
    All,
    Batch,
    Poisoned,
}

/// The generation an earlier daemon left in force, when it was compiled from the same policy
/// files as this start's: the flow events it left in the pinned ring carry that generation,
/// and are then named with this compilation (with other files, they go unnamed rather than
/// misnamed).
fn adopted_generation(
    maps: &DatapathMaps,
    digest: Option<&str>,
    compilation: &crate::policy::Compilation,
) -> Option<u32> {
    let generation = maps.active().ok()?.generation;
    (generation != 0 && digest == Some(compilation.policy.digest.as_str())).then_some(generation)
}
