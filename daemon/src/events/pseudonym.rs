//! Staff addresses are personal data: the internal side of a flow event can be replaced by a
//! keyed hash (stable while the key is, unlinkable without it) or truncated to its network.

use std::net::IpAddr;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// IPv4 prefix kept by truncation: a /24 is a floor or a department, not a person.
pub const TRUNCATE_V4: u8 = 24;
/// IPv6 prefix kept by truncation: a /48 is a site.
pub const TRUNCATE_V6: u8 = 48;

pub enum Pseudonymiser {
    /// HMAC-SHA256 of the address bytes; the first 16 hex digits are written.
    Keyed(Vec<u8>),
    /// The network of `TRUNCATE_V4` / `TRUNCATE_V6` bits.
    Truncate,
}

impl Pseudonymiser {
    /// A keyed pseudonymiser with a fresh random key: pseudonyms are stable for one run only.
    pub fn random() -> std::io::Result<Self> {
        let mut key = vec![0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)?;
        Ok(Self::Keyed(key))
    }

    /// # Panics
    /// Never: HMAC takes keys of any length.
    #[must_use]
    pub fn pseudonym(&self, addr: IpAddr) -> String {
        match self {
            Self::Keyed(key) => {
                // HMAC accepts keys of any length: new_from_slice cannot fail.
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                match addr {
                    IpAddr::V4(a) => mac.update(&a.octets()),
                    IpAddr::V6(a) => mac.update(&a.octets()),
                }
                let digest = mac.finalize().into_bytes();
                let hex = digest[..8].iter().fold(String::new(), |mut s, b| {
                    let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{b:02x}"));
                    s
                });
                format!("anon-{hex}")
            }
            Self::Truncate => match addr {
                IpAddr::V4(a) => ipnet::Ipv4Net::new(a, TRUNCATE_V4)
                    .map(|n| n.trunc().to_string())
                    .unwrap_or_default(),
                IpAddr::V6(a) => ipnet::Ipv6Net::new(a, TRUNCATE_V6)
                    .map(|n| n.trunc().to_string())
                    .unwrap_or_default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_pseudonyms_are_stable_per_key_and_hide_the_address() {
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        let k1 = Pseudonymiser::Keyed(b"one".to_vec());
        let k2 = Pseudonymiser::Keyed(b"two".to_vec());
        assert_eq!(k1.pseudonym(a), k1.pseudonym(a));
        assert_ne!(k1.pseudonym(a), k2.pseudonym(a));
        assert_ne!(k1.pseudonym(a), k1.pseudonym("10.1.2.4".parse().unwrap()));
        assert!(!k1.pseudonym(a).contains("10.1"));
        assert!(k1.pseudonym(a).starts_with("anon-"));
    }

    #[test]
    fn truncation_keeps_the_network_only() {
        let t = Pseudonymiser::Truncate;
        assert_eq!(t.pseudonym("10.1.2.3".parse().unwrap()), "10.1.2.0/24");
        assert_eq!(
            t.pseudonym("2001:db8:1:2::5".parse().unwrap()),
            "2001:db8:1::/48"
        );
    }
}
