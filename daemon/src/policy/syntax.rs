//! The values that policy and catalog files share: names, prefixes, protocols, port ranges.

use std::fmt;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Deserializer, de};
use toml::value::{Date, Datetime};

use super::problem::Problem;

/// A transport or ICMP protocol, as the kernel compares it (the IP protocol number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    /// ICMP over IPv4 only: the kernel compares protocol numbers, and ICMPv6 has its own.
    Icmp,
    Icmpv6,
}

impl Proto {
    #[must_use]
    pub const fn number(self) -> u32 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Icmp => 1,
            Self::Icmpv6 => 58,
        }
    }

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
            Self::Icmpv6 => "icmpv6",
        }
    }

    #[must_use]
    pub const fn has_ports(self) -> bool {
        matches!(self, Self::Tcp | Self::Udp)
    }
}

/// An inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl PortRange {
    pub const ANY: Self = Self {
        min: 0,
        max: u16::MAX,
    };

    #[must_use]
    pub const fn overlaps(self, other: Self) -> bool {
        self.min <= other.max && other.min <= self.max
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// A port or port range as written: `443`, `"443"` or `"8801-8810"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PortSpec {
    Number(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PortSpecVisitor)
    }
}

struct PortSpecVisitor;

impl de::Visitor<'_> for PortSpecVisitor {
    type Value = PortSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port like 443 or a range like \"8801-8810\"")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortSpec, E> {
        Ok(PortSpec::Number(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortSpec, E> {
        Ok(PortSpec::Number(i64::try_from(v).unwrap_or(i64::MAX)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PortSpec, E> {
        Ok(PortSpec::Text(v.to_owned()))
    }
}

pub(crate) fn port_range(spec: &PortSpec) -> Result<PortRange, Problem> {
    match spec {
        PortSpec::Number(n) => {
            let port = u16::try_from(*n).map_err(|_| Problem::BadPort(n.to_string()))?;
            Ok(PortRange {
                min: port,
                max: port,
            })
        }
        PortSpec::Text(text) => port_text(text),
    }
}

fn port_text(text: &str) -> Result<PortRange, Problem> {
    let bad = || Problem::BadPort(text.to_owned());
    let number = |s: &str| s.trim().parse::<u16>().map_err(|_| bad());
    let (min, max) = match text.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => (number(text)?, number(text)?),
    };
    if min > max {
        return Err(Problem::ReversedPorts { min, max });
    }
    Ok(PortRange { min, max })
}

/// A protocol name; `with_icmp` also admits the ICMP protocols (rules may name them, catalog
/// port entries may not: ICMP has no ports).
pub(crate) fn proto(value: &str, with_icmp: bool) -> Result<Proto, Problem> {
    match value {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        "icmp" if with_icmp => Ok(Proto::Icmp),
        "icmpv6" if with_icmp => Ok(Proto::Icmpv6),
        _ => Err(Problem::BadProto {
            value: value.to_owned(),
            allowed: if with_icmp {
                "tcp, udp, icmp, icmpv6"
            } else {
                "tcp, udp"
            },
        }),
    }
}

/// Names of services, rules and groups: `[a-z0-9-]+`, and never `none`, which the kernel
/// tables use for "no service" and "no group".
pub(crate) fn identifier(what: &'static str, value: &str) -> Result<(), Problem> {
    let valid = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(Problem::BadIdentifier {
            what,
            value: value.to_owned(),
        });
    }
    if value == "none" {
        return Err(Problem::ReservedName { what });
    }
    Ok(())
}

pub(crate) fn category(value: &str) -> Result<(), Problem> {
    let valid = !value.is_empty() && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(Problem::BadCategory(value.to_owned()))
    }
}

pub(crate) fn jurisdiction(value: &str) -> Result<(), Problem> {
    if is_country_code(value) {
        Ok(())
    } else {
        Err(unassigned_country(value).unwrap_or_else(|| Problem::BadJurisdiction(value.to_owned())))
    }
}

/// An assigned ISO 3166-1 alpha-2 code (see `country_codes`).
pub(crate) fn is_country_code(value: &str) -> bool {
    super::country_codes::is_assigned(value)
}

/// The problem with two capital letters that no country has (`UK`, `EL`), or `None` for a
/// value that does not look like a country code at all (the caller's own message fits it
/// better).
pub(crate) fn unassigned_country(value: &str) -> Option<Problem> {
    let looks_like_one = value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase());
    (looks_like_one && !is_country_code(value)).then(|| Problem::UnassignedCountry {
        code: value.to_owned(),
        hint: super::country_codes::hint(value).unwrap_or("no country has it"),
    })
}

pub(crate) fn non_empty(what: &'static str, value: &str) -> Result<(), Problem> {
    if value.trim().is_empty() {
        Err(Problem::EmptyText { what })
    } else {
        Ok(())
    }
}

/// A domain suffix: lower-case labels, at least two of them, so that a typo cannot name a
/// whole top-level domain.
pub(crate) fn domain(value: &str) -> Result<(), Problem> {
    let bad = |reason| {
        Err(Problem::BadDomain {
            value: value.to_owned(),
            reason,
        })
    };
    if value.len() > 253 {
        return bad("longer than 253 characters");
    }
    let labels: Vec<&str> = value.split('.').collect();
    if labels.len() < 2 {
        return bad("needs at least two labels, like \"example.org\"");
    }
    // The kernel keeps the hashes of a server name's shortest suffixes only (`sni`).
    if labels.len() > vigie_common::sni::MAX_SUFFIXES - 1 {
        return bad("has more than seven labels, which the kernel's name match does not reach");
    }
    for label in labels {
        let chars_ok = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if label.is_empty()
            || label.len() > 63
            || !chars_ok
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return bad(
                "labels are 1-63 characters of a-z, 0-9 and '-' (not at either end), separated by '.'",
            );
        }
    }
    Ok(())
}

/// A CIDR prefix whose host bits are zero: a prefix with host bits is almost always a typo
/// for a narrower or wider range, and the kernel would silently truncate it.
pub(crate) fn prefix(value: &str) -> Result<IpNet, Problem> {
    let net: IpNet = value
        .trim()
        .parse()
        .map_err(|_| Problem::BadPrefix(value.to_owned()))?;
    if net.trunc() != net {
        return Err(Problem::HostBits {
            value: value.to_owned(),
            network: net.trunc().to_string(),
        });
    }
    if let Some(ipv4) = ipv4_mapped(net) {
        return Err(Problem::MappedPrefix {
            value: value.to_owned(),
            ipv4: ipv4.to_string(),
        });
    }
    Ok(net)
}

/// The IPv4 prefix that an IPv4-mapped IPv6 prefix (inside `::ffff:0:0/96`) stands for. Such a
/// prefix never matches: the kernel looks IPv4 packets up in the IPv4 tables, and no IPv6
/// packet on the wire carries a mapped address. A wider IPv6 prefix that merely contains the
/// mapped range is a real IPv6 prefix and is left alone.
pub(crate) fn ipv4_mapped(net: IpNet) -> Option<Ipv4Net> {
    let IpNet::V6(v6) = net else { return None };
    let ipv4 = v6.network().to_ipv4_mapped()?;
    let len = v6.prefix_len().checked_sub(96)?;
    Ipv4Net::new(ipv4, len).ok()
}

/// A TOML local date (no time, no offset).
pub(crate) fn date(value: &Datetime) -> Result<Date, Problem> {
    match (value.date, value.time, value.offset) {
        (Some(date), None, None) => Ok(date),
        _ => Err(Problem::BadDate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(
            port_range(&PortSpec::Number(443)).unwrap(),
            PortRange { min: 443, max: 443 }
        );
        assert_eq!(
            port_range(&PortSpec::Text("8801-8810".into())).unwrap(),
            PortRange {
                min: 8801,
                max: 8810
            }
        );
        assert_eq!(
            port_range(&PortSpec::Text("20-10".into()))
                .unwrap_err()
                .to_string(),
            "port range 20-10 is reversed: write 10-20"
        );
        assert!(matches!(
            port_range(&PortSpec::Number(70000)),
            Err(Problem::BadPort(_))
        ));
        assert!(matches!(
            port_range(&PortSpec::Text("1-2-3".into())),
            Err(Problem::BadPort(_))
        ));
        assert!(matches!(
            port_range(&PortSpec::Text("http".into())),
            Err(Problem::BadPort(_))
        ));
    }

    #[test]
    fn prefixes_must_have_zero_host_bits() {
        assert_eq!(prefix("10.1.0.0/16").unwrap().to_string(), "10.1.0.0/16");
        assert_eq!(
            prefix("10.1.2.0/16").unwrap_err().to_string(),
            "prefix `10.1.2.0/16` has host bits set: did you mean `10.1.0.0/16`?"
        );
        assert!(matches!(prefix("10.1.0.0"), Err(Problem::BadPrefix(_))));
        assert!(matches!(
            prefix("2001:db8::/129"),
            Err(Problem::BadPrefix(_))
        ));
    }

    #[test]
    fn ipv4_mapped_prefixes_give_their_ipv4_form() {
        assert_eq!(
            prefix("::ffff:10.2.0.0/112").unwrap_err().to_string(),
            "prefix `::ffff:10.2.0.0/112` is IPv4-mapped IPv6, which no packet is matched against \
             (IPv4 packets are looked up as IPv4): write `10.2.0.0/16`"
        );
        assert!(matches!(
            prefix("::ffff:0:0/96"),
            Err(Problem::MappedPrefix { ipv4, .. }) if ipv4 == "0.0.0.0/0"
        ));
        assert!(matches!(
            prefix("::ffff:192.0.2.1/128"),
            Err(Problem::MappedPrefix { ipv4, .. }) if ipv4 == "192.0.2.1/32"
        ));
        // Wider prefixes only contain the mapped range, and other IPv6 prefixes are not mapped.
        assert!(prefix("::/0").is_ok());
        assert!(prefix("::fffe:0:0/96").is_ok());
        assert!(prefix("2001:db8::/32").is_ok());
    }

    #[test]
    fn names() {
        assert!(identifier("rule name", "keep-sovereign-2").is_ok());
        assert!(identifier("rule name", "Keep").is_err());
        assert!(identifier("group", "none").is_err());
        assert!(category("video-conferencing").is_ok());
        assert!(category("video2").is_err());
        assert!(jurisdiction("US").is_ok());
        assert!(jurisdiction("us").is_err());
        assert!(jurisdiction("USA").is_err());
    }

    #[test]
    fn domains() {
        assert!(domain("visio.numerique.gouv.fr").is_ok());
        assert!(domain("zoom.com.cn").is_ok());
        assert!(domain("com").is_err());
        assert!(domain("Zoom.us").is_err());
        assert!(domain("-a.example").is_err());
        assert!(domain("a..example").is_err());
        assert!(domain("*.example.org").is_err());
        assert!(domain("a.b.c.d.e.f.example").is_ok());
        assert!(domain("a.b.c.d.e.f.g.example").is_err());
    }
}
