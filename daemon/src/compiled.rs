//! A compiled policy: what `policy::compile` produces and `maps` writes into a kernel slot.
//! Pure data: nothing here touches the kernel.

use ipnet::{Ipv4Net, Ipv6Net};
use vigie_common::policy::{Destination, Rule, Settings};

/// Identity of a service, by its numeric id in the kernel (`services[id]`, id 0 is "none").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The catalog id, e.g. "zoom".
    pub id: String,
    pub name: String,
    pub operator: String,
    /// ISO 3166-1 alpha-2 code of the operator's country, e.g. "US", "FR".
    pub jurisdiction: String,
    pub category: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// The rule's `name` in policy.toml.
    pub name: String,
    /// Where the rule's name stands (`policy.toml:LINE:COLUMN`), for explanations; `None` for
    /// policies built in code.
    pub place: Option<String>,
}

impl RuleInfo {
    /// A rule known by its name alone.
    #[must_use]
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            place: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledPolicy {
    /// `generation` is left 0: the map writer sets it.
    pub settings: Settings,
    /// In policy order; at most `limits::MAX_RULES`.
    pub rules: Vec<Rule>,
    /// `rule_info[i]` describes `rules[i]`.
    pub rule_info: Vec<RuleInfo>,
    /// Index = kernel service id; index 0 is a placeholder for "no service".
    pub services: Vec<ServiceInfo>,
    /// Index = kernel group id; index 0 is "none" (a source in no group).
    pub groups: Vec<String>,
    /// Destination prefixes, no two equal; the longest match decides.
    pub destinations_v4: Vec<(Ipv4Net, Destination)>,
    pub destinations_v6: Vec<(Ipv6Net, Destination)>,
    /// Source prefixes of the groups, value = group id.
    pub sources_v4: Vec<(Ipv4Net, u32)>,
    pub sources_v6: Vec<(Ipv6Net, u32)>,
    /// Catalog domains, as (hash, service id) sorted by hash: TLS server names are matched to
    /// them (see `vigie_common::sni`).
    pub domains: Vec<(u64, u32)>,
    /// Vendor STUN attribute types, as (type, service id) sorted by type.
    pub stun_attributes: Vec<(u16, u32)>,
    /// Vendor signal ports, as ((protocol, port), service id) sorted: the weakest evidence.
    pub port_signals: Vec<((u8, u16), u32)>,
    /// How addresses learned from DNS are kept.
    pub learning: LearningSettings,
    /// Hex SHA-256 over the policy's source files (names and contents, sorted by name), so that
    /// an event can prove which policy decided.
    pub digest: String,
}

/// `[settings] dns_min_ttl`, `dns_max_ttl`, `dns_max_entries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearningSettings {
    /// A learned address counts for the response's TTL clamped to these bounds (seconds): a
    /// TTL of 0 would never let the flow that follows see it, a day-long one would outlive
    /// the operator's changes.
    pub min_ttl: u32,
    pub max_ttl: u32,
    /// Learned addresses kept at once, per policy slot.
    pub max_entries: u32,
}

impl LearningSettings {
    pub const DEFAULT: Self = Self {
        min_ttl: 60,
        max_ttl: 3600,
        max_entries: 50_000,
    };
}

impl Default for LearningSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl CompiledPolicy {
    /// Whether some rule, or the default, blocks and is enforced (not only reported): what
    /// makes holding a QUIC flow back while its name is read worth its delay.
    #[must_use]
    pub fn enforces_a_block(&self) -> bool {
        use vigie_common::action::{self, mode, rule_mode};
        let policy_mode = self.settings.mode;
        let rule_blocks = self.rules.iter().any(|r| {
            action::blocks(r.action & rule_mode::ACTION_MASK)
                && !rule_mode::monitors(r.action, policy_mode)
        });
        rule_blocks
            || (action::blocks(self.settings.default_action) && policy_mode != mode::MONITOR)
    }

    /// The catalog id of a kernel service id, if any.
    #[must_use]
    pub fn service_name(&self, id: u32) -> Option<&str> {
        if id == 0 {
            return None;
        }
        self.services
            .get(id as usize)
            .map(|s| s.id.as_str())
            .filter(|id| !id.is_empty())
    }

    /// The kernel's service numbering: index = kernel id, the catalog id there ("" for 0 and
    /// for numbers no service holds).
    #[must_use]
    pub fn service_numbering(&self) -> Vec<String> {
        let mut numbering: Vec<String> = self.services.iter().map(|s| s.id.clone()).collect();
        if let Some(none) = numbering.first_mut() {
            none.clear();
        }
        numbering
    }

    /// The numbering to keep after this policy (renumbered after `previous`): its services'
    /// numbers, and the numbers `previous` reserved that no service of this policy took (those
    /// of removed services, which flows may still name).
    #[must_use]
    pub fn numbering_after(&self, previous: Option<&[String]>) -> Vec<String> {
        let mut numbering = self.service_numbering();
        let previous = previous.unwrap_or_default();
        if numbering.len() < previous.len() {
            numbering.resize(previous.len(), String::new());
        }
        for (number, name) in numbering.iter_mut().enumerate().skip(1) {
            if name.is_empty()
                && let Some(reserved) = previous.get(number)
                && !self.services.iter().any(|s| &s.id == reserved)
            {
                name.clone_from(reserved);
            }
        }
        numbering
    }

    /// Renumbers the services so that each one `previous` numbered keeps its number, and a new
    /// one takes a number `previous` never gave (the numbers of removed services stay
    /// reserved): the kernel keeps a flow's service as a number (the evidence of a TLS or QUIC
    /// name, a STUN message, a learned DNS answer), and a swap decides such flows again from
    /// it, so a number must mean the same service in every policy a daemon applies. Numbers are
    /// positions in the sorted catalog otherwise, and adding a service that sorts first would
    /// shift every other one. When the reserved numbers leave no room below the kernel's limit
    /// of 128, removed services' numbers are given again: returns false then (flows whose
    /// evidence names a removed service may be taken for the newcomer).
    pub fn keep_service_numbers(&mut self, previous: &[String]) -> bool {
        const LIMIT: usize = 128;
        let names: Vec<&str> = self
            .services
            .iter()
            .skip(1)
            .map(|s| s.id.as_str())
            .collect();
        let kept = |name: &str| {
            previous
                .iter()
                .position(|p| p == name)
                .filter(|&i| i > 0 && i < LIMIT)
        };
        let assign = |reserve_removed: bool| -> Option<Vec<usize>> {
            let taken: Vec<bool> = (0..LIMIT)
                .map(|i| {
                    i == 0
                        || previous.get(i).is_some_and(|p| {
                            !p.is_empty() && (reserve_removed || names.contains(&p.as_str()))
                        })
                })
                .collect();
            let mut free = (1..LIMIT).filter(|&i| !taken[i]);
            names
                .iter()
                .map(|name| kept(name).or_else(|| free.next()))
                .collect()
        };
        let (numbers, all_reserved) = match assign(true) {
            Some(numbers) => (numbers, true),
            None => match assign(false) {
                Some(numbers) => (numbers, false),
                // More services than the kernel numbers: left as compiled (the compiler
                // refuses such a catalog before this).
                None => return false,
            },
        };
        self.renumber_services(&numbers);
        all_reserved
    }

    /// Moves service `i + 1` (as compiled) to number `numbers[i]`, everywhere a service number
    /// appears.
    fn renumber_services(&mut self, numbers: &[usize]) {
        let new = |old: u32| -> u32 {
            match old as usize {
                0 => 0,
                o => numbers.get(o - 1).map_or(0, |&n| n as u32),
            }
        };
        let len = numbers.iter().copied().max().unwrap_or(0) + 1;
        let gap = ServiceInfo {
            id: String::new(),
            name: String::new(),
            operator: String::new(),
            jurisdiction: String::new(),
            category: String::new(),
        };
        let mut services = vec![gap; len];
        for (old, info) in std::mem::take(&mut self.services).into_iter().enumerate() {
            services[new(old as u32) as usize] = info;
        }
        self.services = services;
        for rule in &mut self.rules {
            let mut bits = [0u64; 2];
            for old in 1..128u32 {
                if rule.services[(old / 64) as usize] & (1 << (old % 64)) != 0 {
                    let n = new(old);
                    bits[(n / 64) as usize] |= 1 << (n % 64);
                }
            }
            rule.services = bits;
        }
        for (_, d) in &mut self.destinations_v4 {
            d.service = new(d.service);
        }
        for (_, d) in &mut self.destinations_v6 {
            d.service = new(d.service);
        }
        for (_, s) in &mut self.domains {
            *s = new(*s);
        }
        for (_, s) in &mut self.stun_attributes {
            *s = new(*s);
        }
        for (_, s) in &mut self.port_signals {
            *s = new(*s);
        }
    }

    /// The name of a kernel group id ("none" for 0 or unknown ids).
    #[must_use]
    pub fn group_name(&self, id: u32) -> &str {
        self.groups.get(id as usize).map_or("none", String::as_str)
    }

    /// The name of a kernel rule number, including the special ones.
    #[must_use]
    pub fn rule_name(&self, rule: u32) -> &str {
        match rule {
            vigie_common::action::rule::DEFAULT => "default",
            vigie_common::action::rule::NO_POLICY => "no-policy",
            n => self
                .rule_info
                .get(n as usize)
                .map_or("unknown", |r| r.name.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::policy::load_from_files;

    fn service(id: &str, extra: &str) -> (PathBuf, String) {
        let text = format!(
            "id = \"{id}\"\nname = \"{id}\"\noperator = \"op\"\njurisdiction = \"US\"\n\
             category = \"conferencing\"\n{extra}\n[source]\nvendor = \"test\"\n\
             retrieved = 2024-06-01\n"
        );
        (PathBuf::from(format!("catalog/{id}.toml")), text)
    }

    fn policy(services: &[(&str, &str)]) -> super::CompiledPolicy {
        let mut files: Vec<(PathBuf, String)> = services
            .iter()
            .map(|(id, extra)| service(id, extra))
            .collect();
        files.push((
            PathBuf::from("policy.toml"),
            "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\n\
             [[rule]]\nname = \"block-zoom\"\nservices = [\"zoom\"]\naction = \"block\"\n"
                .to_owned(),
        ));
        load_from_files(&files)
            .unwrap_or_else(|e| panic!("{e}"))
            .policy
    }

    const ZOOM: &str = "prefixes = [\"192.0.2.0/24\"]\ndomains = [\"zoom.us\"]";
    const TEAMS: &str = "prefixes = [\"198.51.100.0/24\"]";

    /// Where zoom stands: its number in the service table, the rule's bits, its prefix's and
    /// its domain's values.
    fn zoom_numbers(p: &super::CompiledPolicy) -> (usize, [u64; 2], u32, u32) {
        let table = p.services.iter().position(|s| s.id == "zoom").unwrap();
        let prefix = p
            .destinations_v4
            .iter()
            .find(|(n, _)| n.to_string() == "192.0.2.0/24")
            .unwrap()
            .1
            .service;
        (table, p.rules[0].services, prefix, p.domains[0].1)
    }

    #[test]
    fn services_keep_their_numbers_when_the_catalog_changes() {
        let before = policy(&[("teams", TEAMS), ("zoom", ZOOM)]);
        assert_eq!(before.service_numbering(), ["", "teams", "zoom"]);
        assert_eq!(zoom_numbers(&before), (2, [1 << 2, 0], 2, 2));

        // A service that sorts first would take number 1 and shift the others.
        let mut after = policy(&[("aaa", ""), ("teams", TEAMS), ("zoom", ZOOM)]);
        assert_eq!(zoom_numbers(&after), (3, [1 << 3, 0], 3, 3));
        assert!(after.keep_service_numbers(&before.service_numbering()));
        assert_eq!(after.service_numbering(), ["", "teams", "zoom", "aaa"]);
        assert_eq!(zoom_numbers(&after), (2, [1 << 2, 0], 2, 2));
        assert_eq!(after.service_name(1), Some("teams"));
        let teams_prefix = after
            .destinations_v4
            .iter()
            .find(|(n, _)| n.to_string() == "198.51.100.0/24")
            .unwrap();
        assert_eq!(teams_prefix.1.service, 1);

        // A removed service's number stays reserved; the newcomer takes the next free one.
        let mut later = policy(&[("aaa", ""), ("bbb", ""), ("zoom", ZOOM)]);
        assert!(later.keep_service_numbers(&after.service_numbering()));
        assert_eq!(later.service_numbering(), ["", "", "zoom", "aaa", "bbb"]);
        assert_eq!(later.service_name(1), None);
        assert_eq!(zoom_numbers(&later), (2, [1 << 2, 0], 2, 2));

        // A removed service that held the highest number keeps it too (the numbering kept
        // after a policy is what it numbers plus what earlier ones reserved).
        let kept = later.numbering_after(Some(&after.service_numbering()));
        assert_eq!(kept, ["", "teams", "zoom", "aaa", "bbb"]);
        let mut without_bbb = policy(&[("aaa", ""), ("zoom", ZOOM)]);
        assert!(without_bbb.keep_service_numbers(&kept));
        let kept = without_bbb.numbering_after(Some(&kept));
        let mut newcomer = policy(&[("aaa", ""), ("ccc", ""), ("zoom", ZOOM)]);
        assert!(newcomer.keep_service_numbers(&kept));
        assert_eq!(
            newcomer.service_numbering(),
            ["", "", "zoom", "aaa", "", "ccc"]
        );

        // The same files again: nothing moves, and the policy is equal to the one in force.
        let mut again = policy(&[("aaa", ""), ("bbb", ""), ("zoom", ZOOM)]);
        assert!(again.keep_service_numbers(&later.service_numbering()));
        assert_eq!(again, later);
    }

    #[test]
    fn reserved_numbers_give_way_when_the_kernel_has_no_other() {
        let mut previous = vec![String::new()];
        previous.extend((1..128).map(|i| format!("gone{i}")));
        let mut p = policy(&[("zoom", ZOOM)]);
        assert!(!p.keep_service_numbers(&previous));
        assert_eq!(p.service_numbering(), ["", "zoom"]);
    }
}
