//! `vigie explain`: what the policy does with a connection, and why.
//!
//! The answer is the kernel program's own: a private instance (`sandbox`) is loaded with the
//! compiled policy and given the connection's first packet, and the flow entry it writes is
//! read back. Userspace only adds what the kernel does not keep (names, the matching prefix,
//! where the rule is written), and refuses to answer if its own reading of the address table
//! disagrees with the kernel's.

use std::{fmt, net::IpAddr};

use ipnet::IpNet;
use serde::Serialize;
use vigie_common::{
    action::{self, evidence, rule as rule_no},
    flow::flags,
};

use crate::{
    compiled::CompiledPolicy,
    events::{action_name, evidence_name},
    geoip::GeoIp,
    hello::ClientHello,
    probe::{self, Transport},
    sandbox::{Hook, Outcome, Sandbox, SandboxError},
};

/// A connection to explain, as an internal host would open it.
#[derive(Clone, Debug)]
pub struct Question {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport,
    /// The TLS server name the client's ClientHello carries (TCP only).
    pub sni: Option<String>,
    /// The name the client resolved the destination from: a DNS answer tying it to the
    /// destination crosses the gateway before the probe.
    pub dns_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(
        "--sni needs TCP (a ClientHello travels over TCP): use --port N/tcp, 443/tcp by default"
    )]
    SniWithoutTcp,
    #[error("--sni `{0}` is not a host name (1 to 253 bytes)")]
    BadSni(String),
    #[error("--dns-name `{0}` is not a host name: {1}")]
    BadDnsName(String, String),
    #[error("source {src} and destination {dst} are not of one address family")]
    MixedFamilies { src: IpAddr, dst: IpAddr },
    #[error("running the kernel program (explain needs root, as `vigie run` does): {0}")]
    Sandbox(#[from] SandboxError),
    #[error("the kernel program kept no flow entry for the probe packet")]
    NoFlow,
    #[error(
        "the kernel program says service {kernel:?} where the compiled address table says {table:?}: \
         this is a bug in vigie, please report it"
    )]
    Disagreement {
        kernel: Option<String>,
        table: Option<String>,
    },
}

/// The explanation, in the words of the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub src: String,
    pub dst: String,
    pub proto: &'static str,
    pub port: Option<u16>,
    /// The catalog id, `None` when the destination belongs to no service.
    pub service: Option<String>,
    pub operator: Option<String>,
    pub jurisdiction: Option<String>,
    /// The destination's country by the policy's GeoIP database, when its rules use one.
    pub country: Option<String>,
    /// How the service was recognised (`address`, `sni`, …, `none`).
    pub evidence: &'static str,
    /// The TLS server name the probe's ClientHello carried, when asked.
    pub sni: Option<String>,
    /// The name a DNS answer tied to the destination before the probe, when asked.
    pub dns_name: Option<String>,
    /// The longest prefix of the address table that holds the destination.
    pub prefix: Option<String>,
    pub group: String,
    pub group_prefix: Option<String>,
    /// The deciding rule's name, or `default`.
    pub rule: String,
    /// Where the rule is written (`policy.toml:LINE:COLUMN`), when it is a rule of the file.
    pub rule_place: Option<String>,
    /// What the rule (or the default) says: `allow`, `block`, `reject`, `monitor`.
    pub action: &'static str,
    pub mode: &'static str,
    /// What the packet gets: `passes`, `dropped`, or `answered with a TCP reset` (or an ICMP
    /// or ICMPv6 port unreachable), read from the frame the kernel program sent back.
    pub packet: &'static str,
    pub policy_digest: String,
}

/// Runs the connection's first packet through the kernel program under `policy`.
pub fn explain(
    policy: &CompiledPolicy,
    geoip: Option<&GeoIp>,
    question: &Question,
) -> Result<Explanation, ExplainError> {
    let frame = probe::frame(question.src, question.dst, question.transport).ok_or(
        ExplainError::MixedFamilies {
            src: question.src,
            dst: question.dst,
        },
    )?;
    let mut sandbox = Sandbox::new()?;
    sandbox.apply(policy)?;
    if let Some(name) = &question.dns_name {
        crate::policy::syntax::domain(name.trim_end_matches('.'))
            .map_err(|why| ExplainError::BadDnsName(name.clone(), why.to_string()))?;
        // The client's question, then the answer it got when it looked the name up, as the
        // outbound and reply programs see them.
        let message = crate::learning::dns::answer(name, question.dst, 300);
        let mixed = || ExplainError::MixedFamilies {
            src: question.src,
            dst: question.dst,
        };
        let query = probe::dns_query(question.src, &message).ok_or_else(mixed)?;
        let answer = probe::dns_answer(question.src, &message).ok_or_else(mixed)?;
        sandbox.run(Hook::XdpOutbound, &query)?;
        sandbox.run(Hook::TcReply, &answer)?;
    }
    let (mut outcome, mut sent) = sandbox.run_frame(Hook::XdpOutbound, &frame)?;
    if let Some(name) = &question.sni {
        // The SYN opened the flow; the ClientHello segment gets the verdict the name brings.
        let Transport::Tcp { port } = question.transport else {
            return Err(ExplainError::SniWithoutTcp);
        };
        if name.is_empty() || name.len() > vigie_common::sni::MAX_NAME {
            return Err(ExplainError::BadSni(name.clone()));
        }
        let hello = ClientHello::named(name).record();
        let segment = probe::segment(question.src, question.dst, port, &hello).ok_or(
            ExplainError::MixedFamilies {
                src: question.src,
                dst: question.dst,
            },
        )?;
        (outcome, sent) = sandbox.run_frame(Hook::XdpOutbound, &segment)?;
    }
    // The probe's flow (the DNS answer, when asked for, made one of its own).
    let (_, entry) = sandbox
        .flows()
        .into_iter()
        .find(|(key, _)| crate::maps::address(key.family, &key.remote) == question.dst)
        .ok_or(ExplainError::NoFlow)?;

    let service = policy
        .services
        .get(entry.service as usize)
        .filter(|_| entry.service != 0);
    let prefix = longest_destination(policy, question.dst);
    let table_service = prefix.and_then(|(_, id)| policy.service_name(id));
    if entry.evidence == evidence::ADDRESS || entry.evidence == evidence::NONE {
        let kernel = service.map(|s| s.id.as_str());
        if kernel != table_service {
            return Err(ExplainError::Disagreement {
                kernel: kernel.map(str::to_owned),
                table: table_service.map(str::to_owned),
            });
        }
    }
    let is_rule = entry.flags & flags::MATCHED != 0;
    let rule_info = policy.rule_info_of(entry.rule).filter(|_| is_rule);
    let monitor = entry.flags & flags::MONITOR_MODE != 0;
    Ok(Explanation {
        src: question.src.to_string(),
        dst: question.dst.to_string(),
        proto: proto_name(question),
        port: (question.transport != Transport::Echo).then(|| question.transport.port()),
        service: service.map(|s| s.id.clone()),
        operator: service.map(|s| s.operator.clone()),
        jurisdiction: service.map(|s| s.jurisdiction.clone()),
        country: geoip.and_then(|db| db.country(question.dst)),
        evidence: evidence_name(entry.evidence),
        sni: question.sni.clone(),
        dns_name: question.dns_name.clone(),
        prefix: prefix
            .filter(|_| entry.evidence == evidence::ADDRESS)
            .map(|(net, _)| net.to_string()),
        group: policy.group_name(entry.group).to_owned(),
        group_prefix: longest_source(policy, question.src, entry.group).map(|n| n.to_string()),
        rule: if entry.rule == rule_no::DEFAULT {
            "default".to_owned()
        } else {
            policy.rule_name(entry.rule).to_owned()
        },
        rule_place: rule_info.and_then(|r| r.place.clone()),
        action: if entry.action == action::REJECT {
            "reject"
        } else {
            action_name(entry.action)
        },
        mode: if monitor { "monitor" } else { "enforce" },
        packet: match outcome {
            Outcome::Pass => "passes",
            Outcome::Drop => "dropped",
            Outcome::Answer => answer_kind(&sent),
        },
        policy_digest: policy.digest.clone(),
    })
}

/// What the kernel program sent back, from the IP protocol of the frame it wrote (the probe
/// frame has a bare Ethernet header).
fn answer_kind(frame: &[u8]) -> &'static str {
    let proto = match frame.get(14).map(|b| b >> 4) {
        Some(4) => frame.get(14 + 9),
        Some(6) => frame.get(14 + 6),
        _ => None,
    };
    match proto {
        Some(6) => "answered with a TCP reset",
        Some(1) => "answered with an ICMP port unreachable",
        Some(58) => "answered with an ICMPv6 port unreachable",
        _ => "answered",
    }
}

fn proto_name(question: &Question) -> &'static str {
    match (question.transport, question.dst) {
        (Transport::Udp { .. }, _) => "udp",
        (Transport::Tcp { .. }, _) => "tcp",
        (Transport::Echo, IpAddr::V4(_)) => "icmp",
        (Transport::Echo, IpAddr::V6(_)) => "icmpv6",
    }
}

/// The longest destination prefix holding `addr`, with its service id.
fn longest_destination(policy: &CompiledPolicy, addr: IpAddr) -> Option<(IpNet, u32)> {
    let v4 = policy
        .destinations_v4
        .iter()
        .map(|(n, d)| (IpNet::V4(*n), d.service));
    let v6 = policy
        .destinations_v6
        .iter()
        .map(|(n, d)| (IpNet::V6(*n), d.service));
    v4.chain(v6)
        .filter(|(net, _)| net.contains(&addr))
        .max_by_key(|(net, _)| net.prefix_len())
}

/// The longest source prefix of `group` holding `addr`.
fn longest_source(policy: &CompiledPolicy, addr: IpAddr, group: u32) -> Option<IpNet> {
    let v4 = policy
        .sources_v4
        .iter()
        .filter(|(_, g)| *g == group)
        .map(|(n, _)| IpNet::V4(*n));
    let v6 = policy
        .sources_v6
        .iter()
        .filter(|(_, g)| *g == group)
        .map(|(n, _)| IpNet::V6(*n));
    v4.chain(v6)
        .filter(|net| net.contains(&addr))
        .max_by_key(IpNet::prefix_len)
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.port.map(|p| format!(" port {p}")).unwrap_or_default();
        writeln!(f, "{} {} -> {}{port}", self.proto, self.src, self.dst)?;
        match (&self.service, &self.operator, &self.jurisdiction) {
            (Some(id), Some(operator), Some(jurisdiction)) => writeln!(
                f,
                "  service   {id} (operator {operator}, jurisdiction {jurisdiction})"
            )?,
            _ => writeln!(f, "  service   none recognised")?,
        }
        if let Some(country) = &self.country {
            writeln!(f, "  country   {country} (GeoIP)")?;
        }
        match (&self.prefix, &self.sni) {
            (Some(prefix), _) => writeln!(
                f,
                "  evidence  {}: {prefix} in the address table",
                self.evidence
            )?,
            (None, Some(name)) if self.evidence == "sni" => writeln!(
                f,
                "  evidence  sni: the server name {name} is under a catalog domain"
            )?,
            (None, Some(name)) => writeln!(
                f,
                "  evidence  {} (the server name {name} is under no catalog domain)",
                self.evidence
            )?,
            (None, None) => match &self.dns_name {
                Some(name) if self.evidence == "dns" => writeln!(
                    f,
                    "  evidence  dns: a DNS answer tied it to {name}, under a catalog domain"
                )?,
                Some(name) => writeln!(
                    f,
                    "  evidence  {} (the DNS name {name} is under no catalog domain)",
                    self.evidence
                )?,
                None => writeln!(f, "  evidence  {}", self.evidence)?,
            },
        }
        match &self.group_prefix {
            Some(prefix) => writeln!(f, "  source    group {} ({prefix})", self.group)?,
            None => writeln!(f, "  source    in no group")?,
        }
        match &self.rule_place {
            Some(place) => writeln!(f, "  rule      {} ({place}): {}", self.rule, self.action)?,
            None => writeln!(f, "  rule      {}: {}", self.rule, self.action)?,
        }
        let note = if self.mode == "monitor" && (self.action == "block" || self.action == "reject")
        {
            " (monitor mode: the block is reported, not enforced)"
        } else {
            ""
        };
        writeln!(f, "  mode      {}", self.mode)?;
        write!(f, "  packet    {}{note}", self.packet)
    }
}

/// Parses `N/udp` or `N/tcp`.
pub fn parse_port(text: &str) -> Result<Transport, String> {
    let (port, proto) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}`: expected PORT/udp or PORT/tcp, e.g. 8801/udp"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` is not a port number (0-65535)"))?;
    match proto {
        "udp" => Ok(Transport::Udp { port }),
        "tcp" => Ok(Transport::Tcp { port }),
        other => Err(format!("`{other}`: the protocol is udp or tcp")),
    }
}

/// The source used when none is given: an address in no group unless a group holds every
/// address (`0.0.0.0/0`, `::/0`).
#[must_use]
pub const fn unspecified_source(dst: IpAddr) -> IpAddr {
    match dst {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_with_their_protocol() {
        assert_eq!(parse_port("8801/udp"), Ok(Transport::Udp { port: 8801 }));
        assert_eq!(parse_port("443/tcp"), Ok(Transport::Tcp { port: 443 }));
        assert!(parse_port("443").unwrap_err().contains("PORT/udp"));
        assert!(parse_port("70000/tcp").unwrap_err().contains("not a port"));
        assert!(parse_port("53/sctp").unwrap_err().contains("udp or tcp"));
    }
}
