//! A private, unattached instance of the kernel programs, run on crafted or recorded packets
//! through `BPF_PROG_TEST_RUN`: the real verifier-checked code, with its own maps, so that
//! tests, `replay` and `explain` see exactly what an attached program would decide.

use std::time::Duration;

use aya::{
    Ebpf, TestRun as _,
    maps::{MapData, RingBuf},
    programs::{ProgramError, SchedClassifier, TestRunOptions, Xdp},
};
use vigie_common::{
    action,
    counters::{CounterKey, CounterValue, parse_failure, stat},
    event::FlowEvent,
    flow::{FlowEntry, FlowKey},
    maps::{self as names, programs},
};

use crate::{
    compiled::CompiledPolicy,
    learning::{Learner, Lesson},
    loader::{self, LoaderError},
    maps::{DatapathMaps, MapsError},
};

/// Which program a packet is given to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// XDP, outbound (from an internal host).
    XdpOutbound,
    /// TC, outbound, as on a WAN-facing interface's egress.
    TcOutbound,
    /// TC, outbound, as on a LAN-facing interface's ingress.
    TcLanIngress,
    /// TC, a packet from the remote side.
    TcReply,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Drop,
    /// Rejected: the frame was turned into its answer (a TCP reset, an ICMP port unreachable),
    /// sent back with a redirect (XDP or TC).
    Answer,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error("running {program} on a {len}-byte frame: {source}")]
    Run {
        program: &'static str,
        len: usize,
        #[source]
        source: ProgramError,
    },
    #[error("{program} returned {code}, which is no verdict vigie gives")]
    UnknownVerdict { program: &'static str, code: u32 },
    #[error("the kernel object has no ring buffer named {0}")]
    NoRingBuffer(&'static str),
}

pub struct Sandbox {
    ebpf: Ebpf,
    maps: DatapathMaps,
    events: RingBuf<MapData>,
    payloads: RingBuf<MapData>,
    /// Fed after every run, as the daemon's payload reader feeds its own: a DNS response or
    /// a QUIC Initial teaches the kernel before the next packet runs.
    learner: Learner,
    lessons: Vec<Lesson>,
    /// While false, payloads stay in the ring: a daemon that is stopped or too slow.
    learning: bool,
    /// The policy last applied, and its slot, for a learner made later.
    applied: Option<(u32, std::sync::Arc<CompiledPolicy>)>,
}

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;
const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const TC_ACT_UNSPEC: u32 = u32::MAX;
/// Room for the frame a program hands back: the frame itself or, at most, its answer.
const FRAME_OUT_BYTES: usize = 16 * 1024;

impl Sandbox {
    /// A private instance with no policy applied; the failure behaviour lets packets through.
    pub fn new() -> Result<Self, SandboxError> {
        Self::with_failure_action(action::ALLOW)
    }

    pub fn with_failure_action(failure_action: u32) -> Result<Self, SandboxError> {
        let mut ebpf = loader::load(None, failure_action)?;
        let maps = DatapathMaps::take(&mut ebpf, true)?;
        let ring = ebpf
            .take_map(names::EVENTS)
            .ok_or(SandboxError::NoRingBuffer(names::EVENTS))?;
        let events = RingBuf::try_from(ring).map_err(|source| MapsError::Map {
            name: names::EVENTS,
            source,
        })?;
        let ring = ebpf
            .take_map(names::PAYLOADS)
            .ok_or(SandboxError::NoRingBuffer(names::PAYLOADS))?;
        let payloads = RingBuf::try_from(ring).map_err(|source| MapsError::Map {
            name: names::PAYLOADS,
            source,
        })?;
        let learner = maps.learner()?;
        Ok(Self {
            ebpf,
            maps,
            events,
            payloads,
            learner,
            lessons: Vec::new(),
            learning: true,
            applied: None,
        })
    }

    /// Swaps `policy` in, as the daemon does (the learner writes its endpoints into the new
    /// slot first); returns its generation.
    pub fn apply(&mut self, policy: &CompiledPolicy) -> Result<u32, SandboxError> {
        let learner = &mut self.learner;
        let shared = std::sync::Arc::new(policy.clone());
        let applied = &mut self.applied;
        Ok(self.maps.apply_announcing(policy, |_, slot| {
            learner.policy_written(slot, std::sync::Arc::clone(&shared));
            *applied = Some((slot, shared));
        })?)
    }

    /// A reader of the payload ring and a learner of its own, for a thread that reads as the
    /// daemon does (woken by the ring): the sandbox stops reading the ring itself.
    pub fn payload_reader(&mut self) -> Result<(RingBuf<MapData>, Learner), SandboxError> {
        use std::os::fd::AsFd as _;
        self.learning = false;
        // The ring was taken out of the object: reopen the descriptor the sandbox holds.
        let ring = crate::maps::reopen(self.payloads.as_fd(), names::PAYLOADS)?
            .try_into()
            .map_err(|source| MapsError::Map {
                name: names::PAYLOADS,
                source,
            })?;
        let mut learner = self.maps.learner()?;
        if let Some((slot, policy)) = &self.applied {
            learner.policy_written(*slot, std::sync::Arc::clone(policy));
        }
        Ok((ring, learner))
    }

    /// The learner the runs feed (what DNS and QUIC taught so far).
    #[must_use]
    pub const fn learner(&self) -> &Learner {
        &self.learner
    }

    /// Expires learned endpoints as of `now_ns` (`CLOCK_MONOTONIC`), as the daemon does each
    /// second.
    pub fn sweep(&mut self, now_ns: u64) {
        self.learner.sweep(now_ns);
    }

    /// What the payloads of the runs since the last call taught.
    pub fn drain_lessons(&mut self) -> Vec<Lesson> {
        std::mem::take(&mut self.lessons)
    }

    /// Stops (false) or resumes feeding the learner: what the kernel does while no daemon
    /// reads its payloads. Resuming reads what waited in the ring.
    pub fn set_learning(&mut self, on: bool) {
        self.learning = on;
        if on {
            self.learn();
        }
    }

    /// Gives the learner what the last run handed over.
    fn learn(&mut self) {
        if !self.learning {
            return;
        }
        while let Some(item) = self.payloads.next() {
            let lesson = self.learner.payload(&item);
            if lesson != Lesson::Nothing && self.lessons.len() < 4096 {
                self.lessons.push(lesson);
            }
        }
    }

    pub fn run(&mut self, hook: Hook, frame: &[u8]) -> Result<Outcome, SandboxError> {
        self.run_repeated(hook, frame, 1)
            .map(|(outcome, _)| outcome)
    }

    /// Runs the frame `repeat` times in the kernel; returns the verdict and the kernel's
    /// average duration of one run.
    pub fn run_repeated(
        &mut self,
        hook: Hook,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(Outcome, Duration), SandboxError> {
        self.execute(hook, frame, repeat, None)
            .map(|(outcome, duration, _)| (outcome, duration))
    }

    /// Runs the frame once; returns the verdict and the frame as the program left it (for a
    /// rejected packet, its answer).
    pub fn run_frame(
        &mut self,
        hook: Hook,
        frame: &[u8],
    ) -> Result<(Outcome, Vec<u8>), SandboxError> {
        let mut out = vec![0; FRAME_OUT_BYTES.max(frame.len())];
        let (outcome, _, len) = self.execute(hook, frame, 1, Some(&mut out))?;
        out.truncate(len);
        Ok((outcome, out))
    }

    fn execute(
        &mut self,
        hook: Hook,
        frame: &[u8],
        repeat: u32,
        out: Option<&mut [u8]>,
    ) -> Result<(Outcome, Duration, usize), SandboxError> {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.data_out = out;
        opts.repeat = repeat.max(1);
        let program = match hook {
            Hook::XdpOutbound => programs::XDP_OUTBOUND,
            Hook::TcOutbound => programs::TC_OUTBOUND,
            Hook::TcLanIngress => programs::TC_LAN_INGRESS,
            Hook::TcReply => programs::TC_REPLY,
        };
        let result = if hook == Hook::XdpOutbound {
            self.program::<Xdp>(program)?.test_run(opts)
        } else {
            self.program::<SchedClassifier>(program)?.test_run(opts)
        };
        let result = result.map_err(|source| SandboxError::Run {
            program,
            len: frame.len(),
            source,
        })?;
        let outcome = if hook == Hook::XdpOutbound {
            // XDP and TC verdicts overlap (XDP_PASS is TC_ACT_SHOT): the hook says which.
            match result.return_value {
                XDP_PASS => Outcome::Pass,
                XDP_DROP => Outcome::Drop,
                XDP_TX | XDP_REDIRECT => Outcome::Answer,
                code => return Err(SandboxError::UnknownVerdict { program, code }),
            }
        } else {
            match result.return_value {
                TC_ACT_OK | TC_ACT_UNSPEC => Outcome::Pass,
                TC_ACT_SHOT => Outcome::Drop,
                TC_ACT_REDIRECT => Outcome::Answer,
                code => return Err(SandboxError::UnknownVerdict { program, code }),
            }
        };
        self.learn();
        Ok((outcome, result.duration, result.data_size_out as usize))
    }

    fn program<P>(&mut self, name: &'static str) -> Result<&mut P, SandboxError>
    where
        for<'a> &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        let err = |source| SandboxError::Run {
            program: name,
            len: 0,
            source,
        };
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or(ProgramError::NotLoaded)
            .map_err(err)?;
        program.try_into().map_err(err)
    }

    #[must_use]
    pub fn flows(&self) -> Vec<(FlowKey, FlowEntry)> {
        self.maps.flows()
    }

    /// Writes one flow's entry, as the daemon's learner does.
    pub fn write_flow(&mut self, key: &FlowKey, entry: &FlowEntry) -> Result<(), SandboxError> {
        Ok(self.maps.write_flow(key, entry)?)
    }

    pub fn parse_failures(&self) -> Result<[u64; parse_failure::COUNT as usize], SandboxError> {
        Ok(self.maps.parse_failures()?)
    }

    pub fn stats(&self) -> Result<[u64; stat::COUNT as usize], SandboxError> {
        Ok(self.maps.stats()?)
    }

    pub fn counters(&self) -> Result<Vec<(CounterKey, CounterValue)>, SandboxError> {
        Ok(self.maps.counters()?)
    }

    /// The event ring's descriptor: a test watches the ring's wakeups through it.
    #[must_use]
    pub fn events_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.events.as_fd()
    }

    /// The events written since the last call.
    pub fn drain_events(&mut self) -> Vec<FlowEvent> {
        let mut events = Vec::new();
        while let Some(item) = self.events.next() {
            if let Some(event) = crate::events::decode(&item) {
                events.push(event);
            }
        }
        events
    }

    /// What the kernel says of a loaded program (its verified instruction count, say).
    pub fn program_info(
        &self,
        name: &'static str,
    ) -> Result<aya::programs::ProgramInfo, SandboxError> {
        let err = |source| SandboxError::Run {
            program: name,
            len: 0,
            source,
        };
        self.ebpf
            .program(name)
            .ok_or(ProgramError::NotLoaded)
            .and_then(aya::programs::Program::info)
            .map_err(err)
    }

    /// The policy maps, for callers that need more than the above.
    #[must_use]
    pub const fn maps(&self) -> &DatapathMaps {
        &self.maps
    }
}

/// The benchmark's baselines (see `ebpf/src/bin/bare.rs`): XDP and TC programs that pass every
/// packet and do nothing else, and programs that only look the flow up in an LRU table like
/// vigie's and insert it when missing (the floor of a flow table's cost).
static BARE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bare"));

pub struct Bare {
    ebpf: Ebpf,
}

impl Bare {
    pub fn new() -> Result<Self, SandboxError> {
        let mut ebpf = Ebpf::load(BARE_OBJECT).map_err(LoaderError::from)?;
        for name in ["bare_xdp", "bare_tc", "floor_xdp", "floor_tc"] {
            let err = |source| SandboxError::Run {
                program: "bare",
                len: 0,
                source,
            };
            let program = ebpf
                .program_mut(name)
                .ok_or(ProgramError::NotLoaded)
                .map_err(err)?;
            match program {
                aya::programs::Program::Xdp(p) => p.load().map_err(err)?,
                aya::programs::Program::SchedClassifier(p) => p.load().map_err(err)?,
                _ => return Err(err(ProgramError::NotLoaded)),
            }
        }
        Ok(Self { ebpf })
    }

    /// Runs the frame through the bare XDP (`xdp` true) or TC program; returns the kernel's
    /// average duration of one run.
    pub fn run_repeated(
        &mut self,
        xdp: bool,
        frame: &[u8],
        repeat: u32,
    ) -> Result<Duration, SandboxError> {
        self.run(if xdp { "bare_xdp" } else { "bare_tc" }, frame, repeat)
    }

    /// Runs the frame through the flow-table floor program (XDP if `xdp`, else TC).
    pub fn run_floor(
        &mut self,
        xdp: bool,
        frame: &[u8],
        repeat: u32,
    ) -> Result<Duration, SandboxError> {
        self.run(if xdp { "floor_xdp" } else { "floor_tc" }, frame, repeat)
    }

    fn run(&mut self, name: &str, frame: &[u8], repeat: u32) -> Result<Duration, SandboxError> {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.repeat = repeat.max(1);
        let err = |source| SandboxError::Run {
            program: "bare",
            len: frame.len(),
            source,
        };
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or(ProgramError::NotLoaded)
            .map_err(err)?;
        let result = match program {
            aya::programs::Program::Xdp(p) => p.test_run(opts),
            aya::programs::Program::SchedClassifier(p) => p.test_run(opts),
            _ => return Err(err(ProgramError::NotLoaded)),
        };
        Ok(result.map_err(err)?.duration)
    }
}
