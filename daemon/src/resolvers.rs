//! Well-known public resolvers that offer DNS over HTTPS, TLS or QUIC. A host that asks them
//! over an encrypted channel bypasses the DNS vigie learns from: the kernel counts new flows
//! to these addresses on ports 443 and 853 as a blind spot (`encrypted_dns`). The list is the
//! resolvers' published anycast addresses; an operator's own resolver is not in it.

use std::net::IpAddr;

use aya::maps::{HashMap as BpfHashMap, MapData, MapError};
use vigie_common::learned::LearnedKey;

/// (operator, addresses).
pub const RESOLVERS: &[(&str, &[&str])] = &[
    (
        "Cloudflare",
        &[
            "1.1.1.1",
            "1.0.0.1",
            "1.1.1.2",
            "1.0.0.2",
            "1.1.1.3",
            "1.0.0.3",
            "2606:4700:4700::1111",
            "2606:4700:4700::1001",
        ],
    ),
    (
        "Google",
        &[
            "8.8.8.8",
            "8.8.4.4",
            "2001:4860:4860::8888",
            "2001:4860:4860::8844",
        ],
    ),
    (
        "Quad9",
        &[
            "9.9.9.9",
            "149.112.112.112",
            "9.9.9.11",
            "149.112.112.11",
            "2620:fe::fe",
            "2620:fe::9",
        ],
    ),
    (
        "OpenDNS",
        &[
            "208.67.222.222",
            "208.67.220.220",
            "2620:119:35::35",
            "2620:119:53::53",
        ],
    ),
    (
        "AdGuard",
        &[
            "94.140.14.14",
            "94.140.15.15",
            "2a10:50c0::ad1:ff",
            "2a10:50c0::ad2:ff",
        ],
    ),
    ("CleanBrowsing", &["185.228.168.9", "185.228.169.9"]),
    ("Mullvad", &["194.242.2.2", "2a07:e340::2"]),
];

/// Every listed address, parsed.
#[must_use]
pub fn addresses() -> Vec<IpAddr> {
    RESOLVERS
        .iter()
        .flat_map(|(_, addrs)| addrs.iter())
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// Writes the list into the kernel's table (idempotent).
pub fn write(map: &mut BpfHashMap<MapData, LearnedKey, u32>) -> Result<(), MapError> {
    for addr in addresses() {
        map.insert(&crate::learning::learned_key(0, addr), &1, 0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_parses_once() {
        let listed: usize = RESOLVERS.iter().map(|(_, a)| a.len()).sum();
        let mut parsed = addresses();
        assert_eq!(
            parsed.len(),
            listed,
            "an address of the list does not parse"
        );
        parsed.sort();
        parsed.dedup();
        assert_eq!(parsed.len(), listed, "an address is listed twice");
        assert!(listed < vigie_common::limits::RESOLVER_CAPACITY as usize);
    }
}
