//! The daemon's own record of the endpoints learned from DNS: which address, which service (by
//! catalog id, so that it survives a policy whose kernel ids differ), until when, and through
//! which names. Bounded: when full, the entry that would expire first makes room.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use crate::compiled::LearningSettings;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The catalog id of the service, e.g. "zoom".
    pub service: String,
    /// `CLOCK_MONOTONIC` time (ns) after which the entry no longer counts.
    pub expires_ns: u64,
    /// The names the response tied the address to, question first.
    pub names: Vec<String>,
}

/// What learning one address changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// A new address (and perhaps an older one evicted to make room).
    Added { evicted: Option<IpAddr> },
    /// A known address whose expiry or service changed.
    Renewed,
}

#[derive(Default)]
pub struct LearnedTable {
    entries: HashMap<IpAddr, Endpoint>,
    /// (expiry, address) of every entry: the first expires first.
    by_expiry: BTreeSet<(u64, IpAddr)>,
}

impl LearnedTable {
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &Endpoint)> {
        self.entries.iter()
    }

    #[must_use]
    pub fn get(&self, addr: &IpAddr) -> Option<&Endpoint> {
        self.entries.get(addr)
    }

    /// Records `addr` for `service` from a response received at `now_ns` with `ttl` seconds,
    /// clamped to the settings' bounds. An entry never shortens: a second response with a
    /// smaller TTL keeps the later expiry.
    pub fn learn(
        &mut self,
        addr: IpAddr,
        service: &str,
        ttl: u32,
        names: Vec<String>,
        now_ns: u64,
        settings: &LearningSettings,
    ) -> Change {
        let ttl = ttl.clamp(settings.min_ttl, settings.max_ttl.max(settings.min_ttl));
        let mut expires_ns = now_ns.saturating_add(u64::from(ttl) * 1_000_000_000);
        if let Some(known) = self.entries.get_mut(&addr) {
            self.by_expiry.remove(&(known.expires_ns, addr));
            if known.service == service {
                expires_ns = expires_ns.max(known.expires_ns);
            }
            service.clone_into(&mut known.service);
            known.expires_ns = expires_ns;
            known.names = names;
            self.by_expiry.insert((expires_ns, addr));
            return Change::Renewed;
        }
        let mut evicted = None;
        if self.entries.len() >= settings.max_entries as usize
            && let Some(&(first, victim)) = self.by_expiry.iter().next()
        {
            self.by_expiry.remove(&(first, victim));
            self.entries.remove(&victim);
            evicted = Some(victim);
        }
        self.entries.insert(
            addr,
            Endpoint {
                service: service.to_owned(),
                expires_ns,
                names,
            },
        );
        self.by_expiry.insert((expires_ns, addr));
        Change::Added { evicted }
    }

    /// Records what an earlier daemon learned, with its expiry, unless the address is known
    /// or the table is full (a restart keeps what is in force, never more than the bound).
    pub fn adopt(&mut self, addr: IpAddr, service: &str, expires_ns: u64, max: usize) -> bool {
        if self.entries.len() >= max || self.entries.contains_key(&addr) {
            return false;
        }
        self.entries.insert(
            addr,
            Endpoint {
                service: service.to_owned(),
                expires_ns,
                names: Vec::new(),
            },
        );
        self.by_expiry.insert((expires_ns, addr));
        true
    }

    /// Removes the entries expired at `now_ns`; returns their addresses.
    pub fn expire(&mut self, now_ns: u64) -> Vec<IpAddr> {
        let mut gone = Vec::new();
        while let Some(&(expires, addr)) = self.by_expiry.iter().next() {
            if expires > now_ns {
                break;
            }
            self.by_expiry.remove(&(expires, addr));
            self.entries.remove(&addr);
            gone.push(addr);
        }
        gone
    }

    /// Keeps at most `max` entries (a policy that lowered `dns_max_entries`); returns the
    /// addresses dropped, the first to expire first.
    pub fn shrink_to(&mut self, max: usize) -> Vec<IpAddr> {
        let mut gone = Vec::new();
        while self.entries.len() > max {
            let Some(&(expires, addr)) = self.by_expiry.iter().next() else {
                break;
            };
            self.by_expiry.remove(&(expires, addr));
            self.entries.remove(&addr);
            gone.push(addr);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn settings(min_ttl: u32, max_ttl: u32, max_entries: u32) -> LearningSettings {
        LearningSettings {
            min_ttl,
            max_ttl,
            max_entries,
        }
    }

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn ttls_are_clamped_to_the_bounds() {
        let mut table = LearnedTable::default();
        let s = settings(60, 600, 10);
        table.learn(addr(1), "zoom", 5, vec![], 0, &s);
        table.learn(addr(2), "zoom", 86_400, vec![], 0, &s);
        table.learn(addr(3), "zoom", 300, vec![], 0, &s);
        assert_eq!(table.get(&addr(1)).unwrap().expires_ns, 60 * SECOND);
        assert_eq!(table.get(&addr(2)).unwrap().expires_ns, 600 * SECOND);
        assert_eq!(table.get(&addr(3)).unwrap().expires_ns, 300 * SECOND);
    }

    #[test]
    fn expired_entries_leave_and_fresh_ones_stay() {
        let mut table = LearnedTable::default();
        let s = settings(1, 3600, 10);
        table.learn(addr(1), "zoom", 10, vec![], 0, &s);
        table.learn(addr(2), "teams", 100, vec![], 0, &s);
        assert_eq!(table.expire(10 * SECOND), vec![addr(1)]);
        assert!(table.get(&addr(1)).is_none());
        assert!(table.get(&addr(2)).is_some());
        assert!(table.expire(99 * SECOND).is_empty());
        assert_eq!(table.expire(100 * SECOND), vec![addr(2)]);
        assert!(table.is_empty());
    }

    #[test]
    fn a_full_table_evicts_what_expires_first() {
        let mut table = LearnedTable::default();
        let s = settings(1, 3600, 2);
        table.learn(addr(1), "zoom", 50, vec![], 0, &s);
        table.learn(addr(2), "zoom", 20, vec![], 0, &s);
        let change = table.learn(addr(3), "zoom", 30, vec![], 0, &s);
        assert_eq!(
            change,
            Change::Added {
                evicted: Some(addr(2))
            }
        );
        assert_eq!(table.len(), 2);
        assert!(table.get(&addr(1)).is_some() && table.get(&addr(3)).is_some());
    }

    #[test]
    fn a_renewal_never_shortens_but_a_new_service_replaces() {
        let mut table = LearnedTable::default();
        let s = settings(1, 3600, 10);
        table.learn(addr(1), "zoom", 300, vec![], 0, &s);
        assert_eq!(
            table.learn(addr(1), "zoom", 10, vec![], SECOND, &s),
            Change::Renewed
        );
        assert_eq!(table.get(&addr(1)).unwrap().expires_ns, 300 * SECOND);
        table.learn(addr(1), "teams", 10, vec![], SECOND, &s);
        let entry = table.get(&addr(1)).unwrap();
        assert_eq!(
            (entry.service.as_str(), entry.expires_ns),
            ("teams", 11 * SECOND)
        );
        assert_eq!(table.expire(11 * SECOND), vec![addr(1)]);
    }

    #[test]
    fn shrinking_drops_the_first_to_expire() {
        let mut table = LearnedTable::default();
        let s = settings(1, 3600, 10);
        for (i, ttl) in [(1, 40), (2, 10), (3, 30)] {
            table.learn(addr(i), "zoom", ttl, vec![], 0, &s);
        }
        assert_eq!(table.shrink_to(1), vec![addr(2), addr(3)]);
        assert!(table.get(&addr(1)).is_some());
    }
}
