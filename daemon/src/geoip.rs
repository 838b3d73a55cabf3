//! Where an address is registered: a MaxMind-format country database.
//!
//! Two layouts are read: `country_code` at the top of each record (the CC0 database vigie
//! ships, from ip-location-db) and GeoIP2/GeoLite2's `country.iso_code`, falling back to
//! `registered_country.iso_code` for networks (anycast, satellites) that have no physical
//! country.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    #[error("GeoIP database {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("GeoIP database {path}: no record has a country (country_code or country.iso_code)")]
    NoCountries { path: PathBuf },
    #[error("ASN database {path}: no record has an autonomous_system_number")]
    NoAsns { path: PathBuf },
}

pub struct GeoIp {
    reader: Reader<Vec<u8>>,
    path: PathBuf,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(borrow, default)]
    country: Option<Named<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<Named<'a>>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

impl Record<'_> {
    fn code(&self) -> Option<&str> {
        self.country_code
            .or_else(|| self.country.as_ref().and_then(|c| c.iso_code))
            .or_else(|| self.registered_country.as_ref().and_then(|c| c.iso_code))
    }
}

/// Networks with a value, each family apart, sorted by address; networks never overlap. Flat
/// vectors: the whole database may pass through here, and a map's nodes would cost more than
/// the entries and stay with the allocator after.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CountryNetworks<V> {
    pub v4: Vec<(Ipv4Net, V)>,
    pub v6: Vec<(Ipv6Net, V)>,
}

impl GeoIp {
    pub fn open(path: &Path) -> Result<Self, GeoIpError> {
        let unreadable = |reason: String| GeoIpError::Unreadable {
            path: path.to_owned(),
            reason,
        };
        let reader = Reader::open_readfile(path).map_err(|e| unreadable(e.to_string()))?;
        Ok(Self {
            reader,
            path: path.to_owned(),
        })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The country code of `addr`, if the database knows one.
    #[must_use]
    pub fn country(&self, addr: IpAddr) -> Option<String> {
        let found = self.reader.lookup(addr).ok()?;
        let record: Record<'_> = found.decode().ok()??;
        record.code().map(str::to_owned)
    }

    /// Every network whose country `value` maps to `Some`, with that value.
    pub fn networks<V>(
        &self,
        mut value: impl FnMut(&str) -> Option<V>,
    ) -> Result<CountryNetworks<V>, GeoIpError> {
        let (networks, any) = self.walk(|record: &Record<'_>| record.code().map(&mut value))?;
        if !any {
            return Err(GeoIpError::NoCountries {
                path: self.path.clone(),
            });
        }
        Ok(networks)
    }

    /// Every network whose autonomous system (GeoLite2-ASN's `autonomous_system_number`)
    /// `value` maps to `Some`, with that value.
    pub fn asn_networks<V>(
        &self,
        mut value: impl FnMut(u32) -> Option<V>,
    ) -> Result<CountryNetworks<V>, GeoIpError> {
        let (networks, any) =
            self.walk(|record: &AsnRecord| record.autonomous_system_number.map(&mut value))?;
        if !any {
            return Err(GeoIpError::NoAsns {
                path: self.path.clone(),
            });
        }
        Ok(networks)
    }

    /// Every network with a record that `pick` reads; `pick` gives `None` for a record without
    /// the field, `Some(None)` for one whose value is not wanted. Also says whether any record
    /// had the field, so that a database of another kind is told apart from an empty answer.
    fn walk<'de, R: Deserialize<'de>, V>(
        &'de self,
        mut pick: impl FnMut(&R) -> Option<Option<V>>,
    ) -> Result<(CountryNetworks<V>, bool), GeoIpError> {
        let unreadable = |reason: String| GeoIpError::Unreadable {
            path: self.path.clone(),
            reason,
        };
        let mut out = CountryNetworks {
            v4: Vec::new(),
            v6: Vec::new(),
        };
        let mut any = false;
        let networks = self
            .reader
            .networks(WithinOptions::default())
            .map_err(|e| unreadable(e.to_string()))?;
        for found in networks {
            let found = found.map_err(|e| unreadable(e.to_string()))?;
            let Some(record) = found.decode::<R>().map_err(|e| unreadable(e.to_string()))? else {
                continue;
            };
            let Some(wanted) = pick(&record) else {
                continue;
            };
            any = true;
            let Some(v) = wanted else { continue };
            let network = found.network().map_err(|e| unreadable(e.to_string()))?;
            let net = IpNet::new(network.network(), network.prefix())
                .map_err(|e| unreadable(e.to_string()))?;
            match ipv4_of(net) {
                IpNet::V4(n) => out.v4.push((n, v)),
                IpNet::V6(n) => out.v6.push((n, v)),
            }
        }
        // The tree is walked in address order already; sorting makes it a promise.
        out.v4.sort_unstable_by_key(|(n, _)| *n);
        out.v6.sort_unstable_by_key(|(n, _)| *n);
        Ok((out, any))
    }
}

#[derive(Deserialize)]
struct AsnRecord {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
}

/// IPv6 databases hold IPv4 at `::/96` (and some at `::ffff:0:0/96`): give those back as IPv4.
fn ipv4_of(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => {
            let segments = n.network().segments();
            let embedded =
                segments[..5].iter().all(|&s| s == 0) && matches!(segments[5], 0 | 0xffff);
            if embedded {
                let bits = u128::from(n.network()) as u32;
                Ipv4Net::new(bits.into(), n.prefix_len() - 96).map_or(net, IpNet::V4)
            } else {
                net
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> GeoIp {
        GeoIp::open(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../policies/geoip/geo-whois-asn-country.mmdb"),
        )
        .unwrap()
    }

    #[test]
    fn the_shipped_database_knows_countries_of_both_families() {
        let db = shipped();
        // A French public-sector block and Zoom's address space, as registered.
        assert_eq!(
            db.country("193.51.24.1".parse().unwrap()).as_deref(),
            Some("FR")
        );
        assert_eq!(
            db.country("2001:660::1".parse().unwrap()).as_deref(),
            Some("FR")
        );
        assert_eq!(db.country("10.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn networks_of_one_country_are_ipv4_and_ipv6() {
        let db = shipped();
        let fr = db.networks(|code| (code == "FR").then_some(())).unwrap();
        assert!(fr.v4.len() > 100, "{}", fr.v4.len());
        assert!(fr.v6.len() > 100, "{}", fr.v6.len());
        let probe: Ipv4Net = "193.51.24.1/32".parse().unwrap();
        assert!(fr.v4.iter().any(|(n, ())| n.contains(&probe.network())));
        assert!(
            fr.v6
                .iter()
                .all(|(n, ())| !n.network().to_string().starts_with("::"))
        );
        assert!(fr.v4.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_named() {
        let err = GeoIp::open(Path::new("Cargo.toml"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("GeoIP database Cargo.toml: "), "{err}");
    }

    #[test]
    fn embedded_ipv4_becomes_ipv4() {
        assert_eq!(
            ipv4_of("::c000:200/120".parse().unwrap()),
            "192.0.2.0/24".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            ipv4_of("2001:db8::/120".parse().unwrap()),
            "2001:db8::/120".parse::<IpNet>().unwrap()
        );
    }
}
