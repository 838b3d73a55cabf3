//! The command line: `vigie run`, `check`, `explain`, `catalog`, `status`, `detach`.

use std::{net::IpAddr, path::PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    catalog::import::Format, explain, loader::Hook, pins::DEFAULT_PIN_DIR, probe::Transport,
};

#[derive(Debug, Parser)]
#[command(
    name = "vigie",
    version,
    about = "Egress policy enforcer for non-European video-conferencing services"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and attach the datapath, apply the policy, report flow events; runs until
    /// SIGINT/SIGTERM. Enforcement stays in place when the daemon stops (see `detach`).
    Run(RunArgs),
    /// Validate a policy directory and its catalog; exit 64 with every error if it is invalid.
    Check(PolicyArgs),
    /// Say what the policy does with a connection and why, as the kernel program decides it.
    Explain(ExplainArgs),
    /// Run a pcap or pcapng capture through the kernel program under a policy; one line per
    /// flow: initiator, responder, protocol, service, action, rule, evidence.
    Replay(ReplayArgs),
    /// The service catalog: list it with the age of its data, or import a vendor's list.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Show what is attached, the policy generation in force, and map use.
    Status(StatusArgs),
    /// Remove vigie's programs, links and maps from the pin directory.
    Detach(PinArgs),
}

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// Policy directory (policy.toml and catalog/). Default: /etc/vigie if present, else the
    /// shipped default built into the binary.
    #[arg(long)]
    pub policy: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The remote address the internal host connects to.
    #[arg(long)]
    pub dst: IpAddr,
    /// The remote port and protocol, e.g. 8801/udp or 443/tcp. Without it the packet is an
    /// ICMP echo request, judged by address alone.
    #[arg(long, value_parser = explain::parse_port)]
    pub port: Option<Transport>,
    /// The internal host (decides its source group). Default: the unspecified address, in no
    /// group.
    #[arg(long)]
    pub src: Option<IpAddr>,
    /// The TLS server name of the connection: the probe's SYN is followed by a ClientHello
    /// carrying it (TCP; 443/tcp when --port is not given).
    #[arg(long)]
    pub sni: Option<String>,
    /// The name the internal host looked the destination up by: a DNS answer tying NAME to
    /// the destination crosses the gateway first, as it would have.
    #[arg(long)]
    pub dns_name: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The capture (pcap or pcapng; Ethernet, raw IP, Linux cooked or loopback link types).
    #[arg(long)]
    pub pcap: PathBuf,
    /// Internal networks: packets from these addresses are outbound, the others replies.
    /// Repeatable. Default: RFC 1918, 100.64.0.0/10, 169.254.0.0/16, `fc00::/7`, `fe80::/10`.
    #[arg(long)]
    pub lan: Vec<ipnet::IpNet>,
    /// One JSON object per flow instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Each service: jurisdiction, prefixes, domains, where the data comes from, its age.
    List {
        #[command(flatten)]
        policy: PolicyArgs,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replace a service's prefixes with a vendor's published list (the entry's other fields
    /// stay); refuses a list that lost more than half of the prefixes unless forced.
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The policy directory whose `catalog/SERVICE.toml` is rewritten.
    #[arg(long)]
    pub policy: PathBuf,
    /// The catalog id, e.g. zoom.
    #[arg(long)]
    pub service: String,
    #[arg(long, value_enum)]
    pub format: Format,
    /// The published list, as downloaded from the vendor.
    #[arg(long)]
    pub file: PathBuf,
    /// What `[source] vendor` will say. Default: the format and the file's name.
    #[arg(long)]
    pub vendor: Option<String>,
    /// The day the list was retrieved (YYYY-MM-DD). Default: today.
    #[arg(long)]
    pub date: Option<String>,
    /// Microsoft 365: the `serviceArea` to keep (Teams is "Skype").
    #[arg(long, default_value = "Skype")]
    pub service_area: String,
    /// Microsoft 365: endpoint set ids to keep, e.g. 11,12. Default: every id of the area.
    #[arg(long, value_delimiter = ',')]
    pub ids: Vec<u32>,
    /// Import even if the list lost more than half of the prefixes.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct PinArgs {
    /// BPF filesystem directory holding vigie's pinned programs and maps.
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub pins: PinArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Interface to attach to (repeat for several).
    #[arg(long = "iface", required = true)]
    pub ifaces: Vec<String>,
    /// Where outbound traffic is classified: xdp or tc-ingress on the LAN-facing interface,
    /// tc-egress on a WAN-facing one.
    #[arg(long, value_enum)]
    pub hook: Hook,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub pins: PinArgs,
    /// Where flow events go, as JSON lines: a file path, or - for standard output.
    #[arg(long, default_value = "-")]
    pub events: String,
    /// What packets get before any policy has been applied (only when the datapath is new).
    #[arg(long, value_enum, default_value_t = FailureAction::Allow)]
    pub on_failure: FailureAction,
    #[command(flatten)]
    pub observability: ObservabilityArgs,
}

#[derive(Debug, clap::Args)]
pub struct ObservabilityArgs {
    /// Address of the Prometheus endpoint (/metrics).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9947")]
    pub metrics: std::net::SocketAddr,
    /// Serve no metrics.
    #[arg(long, conflicts_with_all = ["metrics", "web_config"])]
    pub no_metrics: bool,
    /// Web configuration file of Prometheus exporters: `tls_server_config` (`cert_file`,
    /// `key_file`) and `basic_auth_users` (name: bcrypt hash).
    #[arg(long, value_name = "FILE")]
    pub web_config: Option<PathBuf>,
    /// Seconds during which repeats of a flow event (same addresses, service, rule, action)
    /// are counted instead of written; 0 writes every event.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub event_window: u64,
    /// Replace internal (LAN) addresses in flow events: a keyed hash, or the /24 (IPv4) or
    /// /48 (IPv6) network.
    #[arg(long, value_enum, value_name = "HOW")]
    pub pseudonymise: Option<Pseudonymise>,
    /// Key of the keyed hash (the file's bytes); without it a random key per start.
    #[arg(long, value_name = "FILE", requires = "pseudonymise")]
    pub pseudonym_key: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Pseudonymise {
    /// HMAC-SHA256 of the address (anon-<16 hex digits>).
    Hmac,
    /// The address's /24 or /48 network.
    Truncate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailureAction {
    /// Fail open: traffic passes until a policy is in force.
    Allow,
    /// Fail closed: traffic is dropped until a policy is in force.
    Block,
}
