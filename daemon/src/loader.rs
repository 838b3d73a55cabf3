//! The only owner of `aya::Ebpf`: loads the embedded kernel object, attaches its programs to
//! interfaces, pins programs' links and maps so that enforcement outlives the daemon, adopts
//! what a previous daemon pinned, and removes it all on `vigie detach`.

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    pin::PinError,
    programs::{
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
    },
};
use serde::{Deserialize, Serialize};
use vigie_common::maps::{self as names, programs};

use crate::pins;

/// The kernel object built by daemon/build.rs from the `vigie-ebpf` crate.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vigie"));

/// Where outbound traffic (from internal hosts) is classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// XDP on the gateway's LAN-facing interface: the cheapest place to drop.
    Xdp,
    /// TC ingress on the LAN-facing interface.
    TcIngress,
    /// TC egress on a WAN-facing interface (or on a host's own interface).
    TcEgress,
}

impl Hook {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Xdp => "xdp",
            Self::TcIngress => "tc-ingress",
            Self::TcEgress => "tc-egress",
        }
    }
}

/// Which traffic a program judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Outbound,
    Reply,
}

/// One program attached to one interface, as recorded in the pin directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub iface: String,
    pub hook: Hook,
    pub direction: Direction,
    /// "xdp", "tc-ingress" or "tc-egress": where this program runs.
    pub point: String,
    pub program: String,
    /// The pinned link (absent when the kernel attached through netlink, which has no link).
    pub link: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("loading the kernel object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error(
        "there is no interface {iface} in this network namespace: nothing was loaded or attached"
    )]
    NoInterface { iface: String },
    #[error(
        "{pin_dir} holds vigie's maps from another version ({map}: {property} is {actual}, this \
         version needs {expected}); the enforcement they hold stays in force, unchanged. To \
         upgrade, run `vigie detach --pin-dir {pin_dir}`, then start this version (nothing is \
         enforced in between)"
    )]
    OtherVersion {
        pin_dir: String,
        map: String,
        property: &'static str,
        expected: u64,
        actual: u64,
    },
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("attaching {program} to {iface} ({point}): {source}")]
    Attach {
        program: &'static str,
        iface: String,
        point: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("pinning the link of {program} on {iface} at {path}: {source}")]
    Pin {
        program: &'static str,
        iface: String,
        path: PathBuf,
        #[source]
        source: PinError,
    },
    #[error("opening pinned link {path}: {source}")]
    PinnedLink {
        path: PathBuf,
        #[source]
        source: LinkError,
    },
    #[error(
        "{iface} already carries vigie's {existing} hook from {pin_dir}; run `vigie detach --pin-dir {pin_dir}` before switching to {wanted}"
    )]
    HookConflict {
        iface: String,
        existing: &'static str,
        wanted: &'static str,
        pin_dir: String,
    },
    #[error("{0}")]
    Pins(#[from] pins::PinsError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Loads the kernel object. With a pin directory, maps already pinned there are reused (the
/// running enforcement's state) and new ones are pinned; without, the instance is private.
pub fn load(pin_dir: Option<&Path>, failure_action: u32) -> Result<Ebpf, LoaderError> {
    let mut loader = EbpfLoader::new();
    loader.override_global(names::globals::FAILURE_ACTION, &failure_action, true);
    let map_paths: Vec<(&str, PathBuf)> = match pin_dir {
        Some(dir) => names::ALL
            .iter()
            .map(|n| (*n, pins::map_path(dir, n)))
            .collect(),
        None => Vec::new(),
    };
    for (name, path) in &map_paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader.load(OBJECT).map_err(|e| other_version(pin_dir, e))?;
    load_program::<Xdp>(&mut ebpf, programs::XDP_OUTBOUND)?;
    load_program::<SchedClassifier>(&mut ebpf, programs::TC_OUTBOUND)?;
    load_program::<SchedClassifier>(&mut ebpf, programs::TC_LAN_INGRESS)?;
    load_program::<SchedClassifier>(&mut ebpf, programs::TC_REPLY)?;
    Ok(ebpf)
}

/// Whether every interface named exists: checked before anything is loaded or attached, so
/// that a mistyped second `--iface` never leaves the first one attached with no policy (its
/// packets then get the failure behaviour, all dropped with `--on-failure block`).
pub fn check_interfaces(ifaces: &[String]) -> Result<(), LoaderError> {
    match ifaces
        .iter()
        .find(|iface| nix::net::if_::if_nametoindex(iface.as_str()).is_err())
    {
        Some(missing) => Err(LoaderError::NoInterface {
            iface: missing.clone(),
        }),
        None => Ok(()),
    }
}

/// A pinned map that this version's definition does not fit (a layout changed between
/// versions) is named with what to do, rather than as a bare map error.
fn other_version(pin_dir: Option<&Path>, error: aya::EbpfError) -> LoaderError {
    match (pin_dir, error) {
        (
            Some(dir),
            aya::EbpfError::MapError(aya::maps::MapError::IncompatiblePinnedMap {
                name,
                property,
                expected,
                actual,
            }),
        ) => LoaderError::OtherVersion {
            pin_dir: dir.display().to_string(),
            map: name,
            property,
            expected,
            actual,
        },
        (_, error) => LoaderError::Load(error),
    }
}

trait Loadable {
    fn load_it(&mut self) -> Result<(), ProgramError>;
}
impl Loadable for Xdp {
    fn load_it(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}
impl Loadable for SchedClassifier {
    fn load_it(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}

fn load_program<P>(ebpf: &mut Ebpf, name: &'static str) -> Result<(), LoaderError>
where
    P: Loadable,
    for<'a> &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let err = |source| LoaderError::Program { name, source };
    let program = ebpf
        .program_mut(name)
        .ok_or(ProgramError::NotLoaded)
        .map_err(err)?;
    let program: &mut P = program.try_into().map_err(err)?;
    program.load_it().map_err(err)
}

/// The programs a hook needs on an interface: the outbound one, and the reply one in the
/// opposite direction.
fn plan(iface: &str, hook: Hook) -> [(Direction, &'static str, &'static str); 2] {
    let _ = iface;
    match hook {
        Hook::Xdp => [
            (Direction::Outbound, programs::XDP_OUTBOUND, "xdp"),
            (Direction::Reply, programs::TC_REPLY, "tc-egress"),
        ],
        Hook::TcIngress => [
            (Direction::Outbound, programs::TC_LAN_INGRESS, "tc-ingress"),
            (Direction::Reply, programs::TC_REPLY, "tc-egress"),
        ],
        Hook::TcEgress => [
            (Direction::Outbound, programs::TC_OUTBOUND, "tc-egress"),
            (Direction::Reply, programs::TC_REPLY, "tc-ingress"),
        ],
    }
}

/// Attaches the hook's programs to `iface`, or adopts the attachments that a previous daemon
/// pinned there, so that a restart never attaches twice.
pub fn attach(
    ebpf: &mut Ebpf,
    pin_dir: &Path,
    iface: &str,
    hook: Hook,
) -> Result<Vec<(Attachment, bool)>, LoaderError> {
    check_no_other_hook(pin_dir, iface, hook)?;
    let mut done = Vec::new();
    for (direction, program, point) in plan(iface, hook) {
        let path = pins::link_path(pin_dir, iface, direction);
        let mut adopted = path.exists();
        if adopted {
            let pinned = PinnedLink::from_pin(&path).map_err(|source| LoaderError::PinnedLink {
                path: path.clone(),
                source,
            })?;
            if !holds_interface(pinned, iface) {
                // The interface was deleted and made again (a PPP reconnect, a recreated veth)
                // since the link was pinned: the kernel detached the link from the old one,
                // and adopting it would enforce nothing. Unpinned, the link goes.
                tracing::warn!(iface, path = %path.display(), "the pinned link holds an interface that is gone: attaching again");
                std::fs::remove_file(&path).map_err(|e| LoaderError::Pin {
                    program,
                    iface: iface.to_owned(),
                    path: path.clone(),
                    source: aya::pin::PinError::SyscallError(aya::sys::SyscallError {
                        call: "unlink",
                        io_error: e,
                    }),
                })?;
                adopted = false;
            }
        }
        let link = if adopted {
            Some(path)
        } else {
            attach_one(ebpf, iface, program, point, &path)?
        };
        let attachment = Attachment {
            iface: iface.to_owned(),
            hook,
            direction,
            point: point.to_owned(),
            program: program.to_owned(),
            link,
        };
        done.push((attachment, adopted));
    }
    Ok(done)
}

/// Whether a pinned link is attached to the interface now named `iface`: its `ifindex` (in
/// the link's fdinfo; 0 once its interface was unregistered) is that interface's. A link whose
/// fdinfo tells no interface, or that cannot be read, is taken as holding it.
fn holds_interface(pinned: PinnedLink, iface: &str) -> bool {
    let link = FdLink::from(pinned);
    let Ok(id) = link.info().map(|info| info.id()) else {
        return true;
    };
    let Some(ifindex) = link_ifindex(id) else {
        return true;
    };
    nix::net::if_::if_nametoindex(iface).is_ok_and(|current| current == ifindex)
}

/// The `ifindex` field of the fdinfo of this process's descriptor of link `id` (the caller
/// holds one open).
fn link_ifindex(id: u32) -> Option<u32> {
    let wanted = format!("link_id:\t{id}");
    std::fs::read_dir("/proc/self/fdinfo")
        .ok()?
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .find(|text| text.lines().any(|line| line == wanted))?
        .lines()
        .find_map(|line| line.strip_prefix("ifindex:\t"))
        .and_then(|value| value.trim().parse().ok())
}

fn check_no_other_hook(pin_dir: &Path, iface: &str, hook: Hook) -> Result<(), LoaderError> {
    let Some(state) = pins::read_state(pin_dir)? else {
        return Ok(());
    };
    match state
        .attachments
        .iter()
        .find(|a| a.iface == iface && a.hook != hook)
    {
        Some(other) => Err(LoaderError::HookConflict {
            iface: iface.to_owned(),
            existing: other.hook.name(),
            wanted: hook.name(),
            pin_dir: pin_dir.display().to_string(),
        }),
        None => Ok(()),
    }
}

fn attach_one(
    ebpf: &mut Ebpf,
    iface: &str,
    program: &'static str,
    point: &'static str,
    pin_path: &Path,
) -> Result<Option<PathBuf>, LoaderError> {
    let attach_err = |source| LoaderError::Attach {
        program,
        iface: iface.to_owned(),
        point,
        source,
    };
    let c_iface = std::ffi::CString::new(iface).map_err(|_| {
        attach_err(ProgramError::UnknownInterface {
            name: c"invalid".to_owned(),
        })
    })?;
    let prog = ebpf
        .program_mut(program)
        .ok_or(ProgramError::NotLoaded)
        .map_err(attach_err)?;
    let fd_link: Option<FdLink> = if point == "xdp" {
        let xdp: &mut Xdp = prog.try_into().map_err(attach_err)?;
        let id = xdp
            .attach(c_iface.as_c_str(), XdpMode::Default)
            .map_err(attach_err)?;
        let link = xdp.take_link(id).map_err(attach_err)?;
        FdLink::try_from(link).ok()
    } else {
        let tc: &mut SchedClassifier = prog.try_into().map_err(attach_err)?;
        let kind = if point == "tc-ingress" {
            TcAttachType::Ingress
        } else {
            TcAttachType::Egress
        };
        // Kernels before 6.6 attach through netlink and need a clsact qdisc; it may exist.
        if aya::util::KernelVersion::current()
            .is_ok_and(|v| v < aya::util::KernelVersion::new(6, 6, 0))
        {
            let _ = aya::programs::tc::qdisc_add_clsact(c_iface.as_c_str());
        }
        let id = tc.attach(c_iface.as_c_str(), kind).map_err(attach_err)?;
        let link = tc.take_link(id).map_err(attach_err)?;
        FdLink::try_from(link).ok()
    };
    match fd_link {
        Some(link) => {
            link.pin(pin_path).map_err(|source| LoaderError::Pin {
                program,
                iface: iface.to_owned(),
                path: pin_path.to_owned(),
                source,
            })?;
            Ok(Some(pin_path.to_owned()))
        }
        // A netlink attachment has no link to pin: it stays attached until removed by name.
        None => Ok(None),
    }
}

/// Removes vigie's attachments recorded in `pin_dir`, then its pinned maps and the directory.
/// Returns the attachments removed.
pub fn detach(pin_dir: &Path) -> Result<Vec<Attachment>, LoaderError> {
    let state = pins::read_state(pin_dir)?.unwrap_or_default();
    for attachment in &state.attachments {
        detach_one(attachment)?;
    }
    pins::remove_all(pin_dir)?;
    Ok(state.attachments)
}

fn detach_one(attachment: &Attachment) -> Result<(), LoaderError> {
    if let Some(path) = &attachment.link {
        if path.exists() {
            let pinned = PinnedLink::from_pin(path).map_err(|source| LoaderError::PinnedLink {
                path: path.clone(),
                source,
            })?;
            let link = pinned.unpin().map_err(|source| LoaderError::Io {
                path: path.clone(),
                source,
            })?;
            // Unpinned and the last descriptor closed: the kernel detaches the program.
            drop(link);
        }
        return Ok(());
    }
    let kind = if attachment.point == "tc-ingress" {
        TcAttachType::Ingress
    } else {
        TcAttachType::Egress
    };
    let iface = std::ffi::CString::new(attachment.iface.as_str()).unwrap_or_default();
    aya::programs::tc::qdisc_detach_program(iface.as_c_str(), kind.into(), &attachment.program)
        .map_err(|e| LoaderError::Io {
            path: PathBuf::from(&attachment.iface),
            source: std::io::Error::other(e),
        })
}

/// Makes sure the pin directory exists on a BPF filesystem, mounting one if needed.
pub fn prepare_pin_dir(pin_dir: &Path) -> Result<(), LoaderError> {
    pins::ensure_bpffs(pin_dir)?;
    // bpffs accepts directories only where they are made explicitly: both the map and the
    // link subdirectories must exist before aya pins into them.
    for sub in ["maps", "links"] {
        let dir = pin_dir.join(sub);
        fs::create_dir_all(&dir).map_err(|source| LoaderError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    Ok(())
}
