//! The lab as the tests and the demo use it: the topology with the catalog's services and the
//! lab's Visio, echo servers on each of their addresses, and the vigie binary to run on the
//! gateway.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::daemon::{Daemon, Hook, RunOptions};
use crate::fixtures::{self, BLOCKED_SERVICES, VISIO};
use crate::peer::{self, Peers, ProbeResult, ProbeSpec, Proto};
use crate::topology::Topology;

/// A running lab (see the module documentation).
pub struct Lab {
    pub peers: Peers,
    pub topo: Topology,
    pub vigie: PathBuf,
}

impl Lab {
    /// Builds the lab with the shipped catalog's services; `peer` is the `vigie-peer` binary,
    /// `vigie` the daemon (see [`crate::bins::vigie`]).
    pub fn new(peer: &Path, vigie: PathBuf) -> anyhow::Result<Self> {
        let services = fixtures::lab_services(&fixtures::shipped_policy_dir().join("catalog"))?;
        Self::with_services(peer, vigie, &services)
    }

    pub fn with_services(
        peer: &Path,
        vigie: PathBuf,
        services: &[(String, Vec<IpAddr>)],
    ) -> anyhow::Result<Self> {
        let topo = Topology::new(services)?;
        let peers = Peers::start(&topo, peer)?;
        Ok(Self { peers, topo, vigie })
    }

    /// The lab with the shipped catalog's services and `unlisted`: hosts at addresses no
    /// catalog service lists (label "unlisted"), where only what the traffic says (a server
    /// name, DNS) can tell a service. `vigie` is the daemon found beside `peer`.
    pub fn with_unlisted(peer: &Path, unlisted: &[&str]) -> anyhow::Result<Self> {
        let vigie = crate::bins::vigie(Some(peer))?;
        let mut services = fixtures::lab_services(&fixtures::shipped_policy_dir().join("catalog"))?;
        let addrs = unlisted
            .iter()
            .map(|a| a.parse::<IpAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        services.push(("unlisted".to_owned(), addrs));
        Self::with_services(peer, vigie, &services)
    }

    /// Starts vigie on the gateway; `policy` None uses the daemon's embedded default.
    pub fn start_vigie(&self, hook: Hook, policy: Option<&Path>) -> anyhow::Result<Daemon<'_>> {
        self.start_vigie_with(hook, policy, &[])
    }

    /// Starts vigie on the gateway with more `vigie run` arguments.
    pub fn start_vigie_with(
        &self,
        hook: Hook,
        policy: Option<&Path>,
        args: &[&str],
    ) -> anyhow::Result<Daemon<'_>> {
        let options = RunOptions {
            hook,
            policy: policy.map(Path::to_owned),
            args: args.iter().map(|&a| a.to_owned()).collect(),
        };
        Daemon::start(&self.topo, &self.vigie, options)
    }

    /// Probes of `protos` to every address of the services `labels`.
    #[must_use]
    pub fn specs(&self, labels: &[&str], protos: &[Proto], timeout: Duration) -> Vec<ProbeSpec> {
        labels
            .iter()
            .flat_map(|l| peer::specs(l, &self.topo.service_addrs(l), protos, timeout))
            .collect()
    }

    /// Every protocol to every address of every service the default policy blocks.
    #[must_use]
    pub fn blocked_specs(&self, timeout: Duration) -> Vec<ProbeSpec> {
        self.specs(&BLOCKED_SERVICES, &Proto::ALL, timeout)
    }

    /// Every protocol to both of Visio's addresses.
    #[must_use]
    pub fn visio_specs(&self, timeout: Duration) -> Vec<ProbeSpec> {
        self.specs(&[VISIO], &Proto::ALL, timeout)
    }

    /// Runs the probes from the LAN host, concurrently.
    #[must_use]
    pub fn probe(&self, specs: &[ProbeSpec]) -> Vec<ProbeResult> {
        self.peers.probe_all(&self.topo, specs)
    }
}
