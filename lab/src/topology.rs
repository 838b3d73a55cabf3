//! The lab: three namespaces joined by veth, with no route out of the machine.
//!
//! ```text
//!  lan                      gw                              inet
//!  uplink0 10.77.0.2/24 --- lan0 10.77.0.1/24   wan0 10.78.0.1/30 --- gw0 10.78.0.2/30
//!          fd77::2/64            fd77::1/64          fd78::1/64           fd78::2/64
//!                                                                     svc0: one /32 or /128
//!                                                                     per service address
//! ```
//! Every veth is created from inside `gw` with its peer placed straight into `lan` or `inet`, so
//! the machine's own namespace never holds a lab interface, not even for a moment.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;

use crate::netns::{self, Netns, exec_command, run_checked};
use crate::process::Process;

/// Addresses of the lab's fixed interfaces.
pub mod addr {
    pub const LAN_HOST_V4: &str = "10.77.0.2";
    pub const LAN_HOST_V6: &str = "fd77::2";
    pub const GW_LAN_V4: &str = "10.77.0.1";
    pub const GW_LAN_V6: &str = "fd77::1";
    pub const GW_WAN_V4: &str = "10.78.0.1";
    pub const GW_WAN_V6: &str = "fd78::1";
    pub const INET_V4: &str = "10.78.0.2";
    pub const INET_V6: &str = "fd78::2";
}

/// Interface names inside the namespaces.
pub mod iface {
    /// The LAN host's interface (in `lan`).
    pub const LAN_HOST: &str = "uplink0";
    /// The gateway's LAN side (in `gw`).
    pub const GW_LAN: &str = "lan0";
    /// The gateway's internet side (in `gw`).
    pub const GW_WAN: &str = "wan0";
    /// The internet's end of the WAN link (in `inet`).
    pub const INET_GW: &str = "gw0";
    /// The interface holding the service addresses (in `inet`).
    pub const SERVICES: &str = "svc0";
}

/// What the lab's namespace names start with (`vg<pid>x<n>t<time>-lan`...).
const NAME_PREFIX: &str = "vg";

/// How long the interfaces may take to come up after `link set up`.
const LINKS_UP: Duration = Duration::from_secs(5);

/// The three roles of the lab's namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Lan,
    Gw,
    Inet,
}

/// A service of the lab's internet: a label and the host addresses it answers on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub label: String,
    pub addrs: Vec<IpAddr>,
}

/// The lab. Drop kills every process spawned through it, then deletes the namespaces (which
/// deletes their interfaces).
#[derive(Debug)]
pub struct Topology {
    services: Vec<Service>,
    children: Mutex<Vec<Process>>,
    // Dropped after `children` are killed (see Drop): a namespace with a live process in it
    // would outlive its name.
    lan: Netns,
    gw: Netns,
    inet: Netns,
}

impl Topology {
    /// Builds the lab; `services` are (label, host addresses) put on the internet side.
    pub fn new(services: &[(String, Vec<IpAddr>)]) -> anyhow::Result<Self> {
        // What labs killed before they could clean up left behind.
        netns::sweep_stale(NAME_PREFIX);
        crate::bpffs::sweep_stale_pin_dirs();
        crate::tempdir::sweep_stale();
        let base = netns::unique_name(NAME_PREFIX);
        let topo = Self {
            services: services
                .iter()
                .map(|(label, addrs)| Service {
                    label: label.clone(),
                    addrs: addrs.clone(),
                })
                .collect(),
            children: Mutex::new(Vec::new()),
            lan: Netns::create(&format!("{base}-lan"))?,
            gw: Netns::create(&format!("{base}-gw"))?,
            inet: Netns::create(&format!("{base}-inet"))?,
        };
        topo.configure()
            .with_context(|| format!("building lab {base}"))?;
        Ok(topo)
    }

    fn configure(&self) -> anyhow::Result<()> {
        for ns in [&self.lan, &self.gw, &self.inet] {
            // Before any interface exists, so that each is born without DAD.
            ns.sysctl(&[no_dad("all"), no_dad("default")].concat())?;
        }
        self.gw.ip_batch(&[
            format!(
                "link add {} type veth peer name {} netns {}",
                iface::GW_LAN,
                iface::LAN_HOST,
                self.lan.name()
            ),
            format!(
                "link add {} type veth peer name {} netns {}",
                iface::GW_WAN,
                iface::INET_GW,
                self.inet.name()
            ),
        ])?;
        self.add_service_interface()?;
        self.configure_lan()?;
        self.configure_gw()?;
        self.configure_inet()?;
        self.lan.wait_running(&[iface::LAN_HOST], LINKS_UP)?;
        self.gw
            .wait_running(&[iface::GW_LAN, iface::GW_WAN], LINKS_UP)?;
        // The service interface only delivers locally: it needs no carrier.
        self.inet.wait_running(&[iface::INET_GW], LINKS_UP)
    }

    /// A dummy interface where the kernel has the driver; otherwise (kernels built without
    /// `CONFIG_DUMMY`) a veth pair whose both ends stay in `inet`.
    fn add_service_interface(&self) -> anyhow::Result<()> {
        let dummy = format!("link add {} type dummy", iface::SERVICES);
        if self.inet.ip_batch(&[dummy]).is_ok() {
            return Ok(());
        }
        let peer = format!("{}p", iface::SERVICES);
        self.inet.ip_batch(&[
            format!("link add {} type veth peer name {peer}", iface::SERVICES),
            format!("link set {peer} up"),
        ])
    }

    fn configure_lan(&self) -> anyhow::Result<()> {
        let dev = iface::LAN_HOST;
        self.lan.sysctl(&no_dad(dev))?;
        self.lan.ip_batch(&[
            format!("addr add {}/24 dev {dev}", addr::LAN_HOST_V4),
            format!("addr add {}/64 dev {dev} nodad", addr::LAN_HOST_V6),
            format!("link set {dev} up"),
            format!("route add default via {}", addr::GW_LAN_V4),
            format!("route add ::/0 via {}", addr::GW_LAN_V6),
        ])?;
        // A veth takes the frames that the gateway's XDP program sends back (`XDP_TX`: vigie's
        // answers to rejected packets) only if its peer, this end, runs NAPI, which GRO turns
        // on; otherwise the kernel drops them (a physical NIC needs nothing of the kind).
        run_checked(&mut exec_command(
            self.lan.name(),
            "ethtool",
            ["-K", dev, "gro", "on"],
        ))
        .map(|_| ())
    }

    /// Deletes the gateway's LAN link (its LAN-host peer goes with it) and makes it again, with
    /// the same names and addresses, as a PPP reconnect or a recreated veth would: a new
    /// interface under the old name, with another ifindex.
    pub fn recreate_lan_link(&self) -> anyhow::Result<()> {
        let lan = iface::GW_LAN;
        self.gw.ip_batch(&[
            format!("link del {lan}"),
            format!(
                "link add {lan} type veth peer name {} netns {}",
                iface::LAN_HOST,
                self.lan.name()
            ),
        ])?;
        self.gw.sysctl(&no_dad(lan))?;
        self.gw.ip_batch(&[
            format!("addr add {}/24 dev {lan}", addr::GW_LAN_V4),
            format!("addr add {}/64 dev {lan} nodad", addr::GW_LAN_V6),
            format!("link set {lan} up"),
        ])?;
        self.configure_lan()?;
        self.lan.wait_running(&[iface::LAN_HOST], LINKS_UP)?;
        self.gw.wait_running(&[lan], LINKS_UP)
    }

    fn configure_gw(&self) -> anyhow::Result<()> {
        let (lan, wan) = (iface::GW_LAN, iface::GW_WAN);
        let mut settings = no_dad(lan);
        settings.extend(no_dad(wan));
        settings.extend([
            "net.ipv4.ip_forward=1".to_owned(),
            "net.ipv6.conf.all.forwarding=1".to_owned(),
        ]);
        self.gw.sysctl(&settings)?;
        self.gw.ip_batch(&[
            format!("addr add {}/24 dev {lan}", addr::GW_LAN_V4),
            format!("addr add {}/64 dev {lan} nodad", addr::GW_LAN_V6),
            format!("addr add {}/30 dev {wan}", addr::GW_WAN_V4),
            format!("addr add {}/64 dev {wan} nodad", addr::GW_WAN_V6),
            format!("link set {lan} up"),
            format!("link set {wan} up"),
            format!("route add default via {}", addr::INET_V4),
            format!("route add ::/0 via {}", addr::INET_V6),
        ])
    }

    fn configure_inet(&self) -> anyhow::Result<()> {
        let (dev, svc) = (iface::INET_GW, iface::SERVICES);
        let mut settings = no_dad(dev);
        settings.extend(no_dad(svc));
        self.inet.sysctl(&settings)?;
        let mut lines = vec![
            format!("addr add {}/30 dev {dev}", addr::INET_V4),
            format!("addr add {}/64 dev {dev} nodad", addr::INET_V6),
            format!("link set {dev} up"),
            format!("link set {svc} up"),
            format!("route add 10.77.0.0/24 via {}", addr::GW_WAN_V4),
            format!("route add fd77::/64 via {}", addr::GW_WAN_V6),
        ];
        for a in self.services.iter().flat_map(|s| &s.addrs) {
            lines.push(match a {
                IpAddr::V4(v4) => format!("addr add {v4}/32 dev {svc}"),
                IpAddr::V6(v6) => format!("addr add {v6}/128 dev {svc} nodad"),
            });
        }
        self.inet.ip_batch(&lines)
    }

    #[must_use]
    pub fn lan(&self) -> &str {
        self.lan.name()
    }

    #[must_use]
    pub fn gw(&self) -> &str {
        self.gw.name()
    }

    #[must_use]
    pub fn inet(&self) -> &str {
        self.inet.name()
    }

    #[must_use]
    pub fn ns(&self, role: Role) -> &str {
        match role {
            Role::Lan => self.lan(),
            Role::Gw => self.gw(),
            Role::Inet => self.inet(),
        }
    }

    #[must_use]
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The addresses of the service labelled `label` (empty if there is none).
    #[must_use]
    pub fn service_addrs(&self, label: &str) -> Vec<IpAddr> {
        self.services
            .iter()
            .filter(|s| s.label == label)
            .flat_map(|s| s.addrs.clone())
            .collect()
    }

    /// Runs `cmd args...` in namespace `ns` to completion; the exit status is the caller's to
    /// judge.
    pub fn exec(&self, ns: &str, cmd: impl AsRef<Path>, args: &[&str]) -> anyhow::Result<Output> {
        let cmd = cmd.as_ref();
        netns::exec_command(ns, cmd, args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} in {ns}", cmd.display()))
    }

    /// Starts `cmd args...` in namespace `ns` with the given stdio; the topology kills it on
    /// drop if it still runs.
    pub fn spawn(
        &self,
        ns: &str,
        cmd: impl AsRef<Path>,
        args: &[&str],
        stdout: Stdio,
        stderr: Stdio,
    ) -> anyhow::Result<Process> {
        let cmd = cmd.as_ref();
        let child = netns::exec_command(ns, cmd, args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {} in {ns}", cmd.display()))?;
        let process = Process::new(child, &format!("{} in {ns}", cmd.display()));
        self.children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(process.clone());
        Ok(process)
    }

    /// Builds a command to run in namespace `ns`, for callers who need more control.
    #[must_use]
    pub fn command(&self, ns: &str, cmd: impl AsRef<Path>) -> Command {
        netns::exec_command(ns, cmd.as_ref(), std::iter::empty::<&str>())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(PoisonError::into_inner));
        for child in &children {
            if let Err(e) = child.kill() {
                crate::report::warn(format_args!("{e:#}"));
            }
        }
        // The namespaces drop next, in field order.
    }
}

/// Sysctls that turn IPv6 duplicate address detection off for `dev` (or all/default).
fn no_dad(dev: &str) -> Vec<String> {
    vec![
        format!("net.ipv6.conf.{dev}.accept_dad=0"),
        format!("net.ipv6.conf.{dev}.dad_transmits=0"),
    ]
}
