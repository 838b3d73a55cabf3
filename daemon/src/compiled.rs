//! A compiled policy: what `policy::compile` produces and `maps` writes into a kernel slot.
//! Pure data: nothing here touches the kernel.

use ipnet::{Ipv4Net, Ipv6Net};
use vigie_common::policy::{Destination, Rule, Settings};

use crate::numbering::{Numbering, Numbers};

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
    /// In policy order; at most `limits::MAX_RULES`. Each carries its number (`Rule::number`):
    /// its position as compiled, the one it had in the policy in force once the daemon has
    /// renumbered it (`keep_rule_numbers`).
    pub rules: Vec<Rule>,
    /// `rule_info[i]` describes `rules[i]`.
    pub rule_info: Vec<RuleInfo>,
    /// Index = kernel service id; index 0 is a placeholder for "no service".
    pub services: Vec<ServiceInfo>,
    /// Index = kernel group id; index 0 is "none" (a source in no group), "" for a number no
    /// group of this policy holds (after `keep_group_numbers`).
    pub groups: Vec<String>,
    /// The numbers earlier policies gave to rules and groups that this one no longer has.
    pub reserved: Reserved,
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

/// Rules and groups that policies applied before this one numbered and this one no longer has,
/// by their numbers (empty as compiled): the counter rows they left (kept across reloads and
/// restarts) and the flows they decided are still named after them, and no newcomer takes
/// their numbers while there are others.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reserved {
    pub services: Numbering,
    pub rules: Numbering,
    pub groups: Numbering,
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
            .or_else(|| self.reserved.services.name(id as usize))
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
        let previous = Numbering::from(previous.unwrap_or_default().to_vec());
        previous
            .after(&Numbering::from(self.service_numbering()))
            .into_names()
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
        let names: Vec<&str> = self
            .services
            .iter()
            .skip(1)
            .map(|s| s.id.as_str())
            .collect();
        let previous = Numbering::from(previous.to_vec());
        let renumbering = previous.renumber(&names, Numbers::SERVICES);
        // More services than the kernel numbers: left as compiled (the compiler refuses such a
        // catalog before this).
        let Some(renumbering) = renumbering else {
            return false;
        };
        self.renumber_services(&renumbering.numbers);
        // Counter rows and flows of removed services keep their names.
        self.reserved.services = previous.removed_from(&Numbering::from(self.service_numbering()));
        renumbering.kept_reserved
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

    /// The kernel's group numbering, to keep for the next policy: index = group id, the
    /// group's name there, or a removed group's whose number stays reserved ("" for 0 and for
    /// numbers no group holds).
    #[must_use]
    pub fn group_numbering(&self) -> Vec<String> {
        self.numbered_groups()
            .merged(&self.reserved.groups)
            .into_names()
    }

    /// This policy's own groups by number.
    fn numbered_groups(&self) -> Numbering {
        let held = self.groups.iter().enumerate().skip(1);
        Numbering::of(held.map(|(id, name)| (id, name.as_str())))
    }

    /// Renumbers the groups so that each one `previous` numbered keeps its number, and a new
    /// one takes a number `previous` never gave (removed groups' numbers stay reserved, with
    /// their names): counter rows and flows carry a group's number, and the rows are kept
    /// across reloads and restarts. Numbers are positions in name order otherwise, and adding
    /// a group that sorts first would export what every other group counted under its
    /// neighbour's name. When the reserved numbers leave no room below the kernel's limit of
    /// 64, removed groups' numbers are given again: returns false then (their rows may be
    /// named after the newcomer).
    pub fn keep_group_numbers(&mut self, previous: &[String]) -> bool {
        let previous = Numbering::from(previous.to_vec());
        let held: Vec<(usize, &str)> = self
            .groups
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, name)| !name.is_empty())
            .map(|(id, name)| (id, name.as_str()))
            .collect();
        let names: Vec<&str> = held.iter().map(|&(_, name)| name).collect();
        // More groups than the kernel numbers: left as compiled (the compiler refuses them).
        let Some(renumbering) = previous.renumber(&names, Numbers::GROUPS) else {
            return false;
        };
        let mut new_of = vec![0u32; self.groups.len()];
        for (&(old, _), &new) in held.iter().zip(&renumbering.numbers) {
            new_of[old] = new as u32;
        }
        self.renumber_groups(&new_of);
        self.reserved.groups = previous.removed_from(&self.numbered_groups());
        renumbering.kept_reserved
    }

    /// Moves group `old` (as compiled) to number `new_of[old]`, everywhere a group number
    /// appears: the group table, the rules' group masks and the source prefixes.
    fn renumber_groups(&mut self, new_of: &[u32]) {
        let new = |old: u32| new_of.get(old as usize).copied().unwrap_or(0);
        let len = new_of.iter().copied().max().unwrap_or(0) as usize + 1;
        let mut groups = vec![String::new(); len];
        for (old, name) in std::mem::take(&mut self.groups).into_iter().enumerate() {
            // "none" stays at 0; a gap has nothing to move.
            if old == 0 || !name.is_empty() {
                groups[new(old as u32) as usize] = name;
            }
        }
        self.groups = groups;
        for rule in &mut self.rules {
            rule.groups = moved_bits(rule.groups, new);
            rule.except_groups = moved_bits(rule.except_groups, new);
        }
        for (_, group) in &mut self.sources_v4 {
            *group = new(*group);
        }
        for (_, group) in &mut self.sources_v6 {
            *group = new(*group);
        }
    }

    /// The kernel's rule numbering, to keep for the next policy: index = rule number, the
    /// rule's name there, or a removed rule's whose number stays reserved ("" for numbers no
    /// rule holds).
    #[must_use]
    pub fn rule_numbering(&self) -> Vec<String> {
        self.numbered_rules()
            .merged(&self.reserved.rules)
            .into_names()
    }

    /// This policy's own rules by number.
    fn numbered_rules(&self) -> Numbering {
        let numbered = self.rules.iter().zip(&self.rule_info);
        Numbering::of(numbered.map(|(rule, info)| (rule.number as usize, info.name.as_str())))
    }

    /// Renumbers the rules so that each one `previous` numbered keeps its number, and a new
    /// one takes a number `previous` never gave (removed rules' numbers stay reserved, with
    /// their names): counter rows, flow entries and events carry the deciding rule's number,
    /// and the rows are kept across reloads and restarts. Numbers are positions in
    /// `policy.toml` otherwise, and a rule inserted before others would export what each later
    /// rule counted under its neighbour's name. Numbers stay below the special ones
    /// (`action::rule::NO_POLICY`): once some 65,000 names have had one, numbers of removed
    /// rules are given again, lowest first, and this returns false (what those rules counted
    /// may then be named after a newcomer).
    pub fn keep_rule_numbers(&mut self, previous: &[String]) -> bool {
        let previous = Numbering::from(previous.to_vec());
        let names: Vec<&str> = self.rule_info.iter().map(|r| r.name.as_str()).collect();
        // More rules than rule numbers: left as compiled (the compiler allows 64).
        let Some(renumbering) = previous.renumber(&names, Numbers::RULES) else {
            return false;
        };
        for (rule, &number) in self.rules.iter_mut().zip(&renumbering.numbers) {
            rule.number = number as u32;
        }
        self.reserved.rules = previous.removed_from(&self.numbered_rules());
        renumbering.kept_reserved
    }

    /// The name of a kernel group id: one of this policy's groups, or a removed group whose
    /// number is reserved ("none" for 0 or unknown ids).
    #[must_use]
    pub fn group_name(&self, id: u32) -> &str {
        self.groups
            .get(id as usize)
            .map(String::as_str)
            .filter(|name| !name.is_empty())
            .or_else(|| self.reserved.groups.name(id as usize))
            .unwrap_or("none")
    }

    /// What describes the rule that holds kernel rule number `number` (its number, not its
    /// position: the two differ once the daemon has kept numbers across a change).
    #[must_use]
    pub fn rule_info_of(&self, number: u32) -> Option<&RuleInfo> {
        let position = self.rules.iter().position(|r| r.number == number)?;
        self.rule_info.get(position)
    }

    /// The name of a kernel rule number, including the special ones and removed rules whose
    /// number is reserved.
    #[must_use]
    pub fn rule_name(&self, rule: u32) -> &str {
        match rule {
            vigie_common::action::rule::DEFAULT => "default",
            vigie_common::action::rule::NO_POLICY => "no-policy",
            n => self
                .rule_info_of(n)
                .map(|r| r.name.as_str())
                .or_else(|| self.reserved.rules.name(n as usize))
                .unwrap_or("unknown"),
        }
    }
}

/// A group mask with each bit `old` moved to bit `new(old)` (numbers below 64).
fn moved_bits(bits: u64, new: impl Fn(u32) -> u32) -> u64 {
    (0..64u32)
        .filter(|&old| bits & (1 << old) != 0)
        .fold(0, |moved, old| moved | 1 << new(old))
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
        // Still named, for the counter rows and flows it left.
        assert_eq!(later.service_name(1), Some("teams"));
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
        let in_force = later.numbering_after(Some(&after.service_numbering()));
        assert!(again.keep_service_numbers(&in_force));
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

#[cfg(test)]
mod numbering_tests {
    use std::path::PathBuf;

    use vigie_common::action::rule;

    use super::CompiledPolicy;
    use crate::policy::load_from_files;

    const CATALOG: &str = "id = \"zoom\"\nname = \"Zoom\"\noperator = \"op\"\n\
                           jurisdiction = \"US\"\ncategory = \"conferencing\"\n\
                           prefixes = [\"192.0.2.0/24\"]\n\
                           [source]\nvendor = \"test\"\nretrieved = 2024-06-01\n";

    /// `policy.toml` after the settings (groups, rules), compiled with a Zoom-only catalog.
    fn compiled(body: &str) -> CompiledPolicy {
        let files = [
            (PathBuf::from("catalog/zoom.toml"), CATALOG.to_owned()),
            (
                PathBuf::from("policy.toml"),
                format!(
                    "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\n\
                     {body}"
                ),
            ),
        ];
        load_from_files(&files)
            .unwrap_or_else(|e| panic!("{e}"))
            .policy
    }

    /// Rules named `names`, in that order, each blocking Zoom.
    fn rules(names: &[&str]) -> CompiledPolicy {
        let rows: Vec<String> = names
            .iter()
            .map(|n| {
                format!("[[rule]]\nname = \"{n}\"\nservices = [\"zoom\"]\naction = \"block\"\n")
            })
            .collect();
        compiled(&rows.concat())
    }

    /// `rules(names)` renumbered after `previous`, as the daemon applies it.
    fn rules_after(names: &[&str], previous: &CompiledPolicy) -> CompiledPolicy {
        let mut policy = rules(names);
        assert!(policy.keep_rule_numbers(&previous.rule_numbering()));
        policy
    }

    fn numbers(policy: &CompiledPolicy) -> Vec<(u32, &str)> {
        policy
            .rules
            .iter()
            .zip(&policy.rule_info)
            .map(|(r, info)| (r.number, info.name.as_str()))
            .collect()
    }

    #[test]
    fn compiled_rules_are_numbered_by_position() {
        let policy = rules(&["a", "b"]);
        assert_eq!(numbers(&policy), [(0, "a"), (1, "b")]);
        assert_eq!(policy.rule_numbering(), ["a", "b"]);
        assert_eq!(policy.rule_name(1), "b");
        assert_eq!(policy.rule_name(2), "unknown");
        assert_eq!(policy.rule_name(rule::DEFAULT), "default");
    }

    #[test]
    fn a_rule_inserted_first_takes_a_new_number_and_the_others_keep_theirs() {
        let before = rules(&["allow-visio", "block-zoom"]);
        let after = rules_after(&["block-all", "allow-visio", "block-zoom"], &before);
        assert_eq!(
            numbers(&after),
            [(2, "block-all"), (0, "allow-visio"), (1, "block-zoom")]
        );
        // What the kernel counted under 1 (block-zoom) stays block-zoom's.
        assert_eq!(after.rule_name(1), "block-zoom");
        assert_eq!(after.rule_name(2), "block-all");
        assert_eq!(after.rule_info_of(1).unwrap().name, "block-zoom");
        let place = after.rule_info_of(1).unwrap().place.as_deref().unwrap();
        assert!(place.starts_with("policy.toml:"), "{place}");
        assert_eq!(after.rule_info_of(0).unwrap().name, "allow-visio");
        assert_eq!(
            after.rule_numbering(),
            ["allow-visio", "block-zoom", "block-all"]
        );
    }

    #[test]
    fn removed_rules_keep_their_numbers_and_names() {
        let first = rules(&["a", "b", "c"]);
        let without_a = rules_after(&["b", "c"], &first);
        assert_eq!(numbers(&without_a), [(1, "b"), (2, "c")]);
        assert_eq!(
            without_a.rule_name(0),
            "a",
            "rows of a removed rule keep its name"
        );
        assert_eq!(without_a.rule_info_of(0), None);
        assert_eq!(without_a.rule_numbering(), ["a", "b", "c"]);

        // A newcomer does not take the removed rule's number, even when the removed one held
        // the highest.
        let without_c = rules_after(&["b"], &without_a);
        assert_eq!(without_c.rule_numbering(), ["a", "b", "c"]);
        let newcomer = rules_after(&["d", "b"], &without_c);
        assert_eq!(numbers(&newcomer), [(3, "d"), (1, "b")]);
        assert_eq!((newcomer.rule_name(0), newcomer.rule_name(2)), ("a", "c"));

        // A removed rule added again gets its own number back.
        let again = rules_after(&["a", "d", "b"], &newcomer);
        assert_eq!(numbers(&again), [(0, "a"), (3, "d"), (1, "b")]);
        assert_eq!(again.rule_numbering(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_renamed_rule_is_a_new_rule() {
        let before = rules(&["a", "b"]);
        let renamed = rules_after(&["a", "b2"], &before);
        assert_eq!(numbers(&renamed), [(0, "a"), (2, "b2")]);
        assert_eq!(renamed.rule_name(1), "b", "what b counted is not b2's");
    }

    #[test]
    fn the_same_rules_again_compile_to_the_policy_in_force() {
        let first = rules(&["a", "b", "c"]);
        let in_force = rules_after(&["c", "a"], &first);
        let again = rules_after(&["c", "a"], &in_force);
        assert_eq!(
            again, in_force,
            "the reload would otherwise write a new generation"
        );
    }

    #[test]
    fn rule_numbers_given_again_only_when_exhausted() {
        let limit = rule::NO_POLICY as usize;
        let mut previous: Vec<String> = (0..limit).map(|i| format!("gone{i}")).collect();
        previous[7] = "kept".to_owned();
        let mut policy = rules(&["new", "kept"]);
        assert!(!policy.keep_rule_numbers(&previous), "a warning is due");
        assert_eq!(numbers(&policy), [(0, "new"), (7, "kept")]);
        assert_eq!(policy.rule_name(1), "gone1", "the rest stay reserved");
        let numbering = policy.rule_numbering();
        assert_eq!(
            numbering.len(),
            limit,
            "numbers stay below the special ones"
        );
        assert_eq!(numbering[0], "new");
    }

    const GROUPS: &str = "[groups.finance]\nprefixes = [\"10.1.0.0/16\", \"fd00:1::/48\"]\n\
                          [groups.sales]\nprefixes = [\"10.9.0.0/16\"]\n";

    /// A rule on the groups, after `groups`.
    fn grouped(groups: &str, only: &str, except: &str) -> CompiledPolicy {
        compiled(&format!(
            "{groups}[[rule]]\nname = \"r\"\nservices = [\"zoom\"]\ngroups = [{only}]\n\
             except_groups = [{except}]\naction = \"block\"\n"
        ))
    }

    fn source_v4(policy: &CompiledPolicy, prefix: &str) -> u32 {
        policy
            .sources_v4
            .iter()
            .find(|(n, _)| n.to_string() == prefix)
            .unwrap_or_else(|| panic!("no source {prefix}"))
            .1
    }

    #[test]
    fn groups_keep_their_numbers_when_one_that_sorts_first_is_added() {
        let before = grouped(GROUPS, "\"sales\"", "\"finance\"");
        assert_eq!(before.group_numbering(), ["", "finance", "sales"]);
        let audit = "[groups.audit]\nprefixes = [\"10.5.0.0/16\"]\n";
        let mut after = grouped(&format!("{audit}{GROUPS}"), "\"sales\"", "\"finance\"");
        assert_eq!(after.groups, ["none", "audit", "finance", "sales"]);
        assert!(after.keep_group_numbers(&before.group_numbering()));
        assert_eq!(after.groups, ["none", "finance", "sales", "audit"]);
        assert_eq!(after.group_name(1), "finance");
        // The rule's masks and the source prefixes moved with the numbers.
        assert_eq!(after.rules[0].groups, 1 << 2);
        assert_eq!(after.rules[0].except_groups, 1 << 1);
        assert_eq!(source_v4(&after, "10.1.0.0/16"), 1);
        assert_eq!(source_v4(&after, "10.9.0.0/16"), 2);
        assert_eq!(source_v4(&after, "10.5.0.0/16"), 3);
        assert_eq!(after.sources_v6[0].1, 1);
        assert_eq!(after.rules[0].groups, before.rules[0].groups);
        assert_eq!(after.rules[0].except_groups, before.rules[0].except_groups);
    }

    #[test]
    fn removed_groups_keep_their_numbers_and_names() {
        let before = grouped(GROUPS, "\"sales\"", "\"finance\"");
        let only_sales = "[groups.sales]\nprefixes = [\"10.9.0.0/16\"]\n";
        let mut after = grouped(only_sales, "\"sales\"", "\"sales\"");
        assert!(after.keep_group_numbers(&before.group_numbering()));
        assert_eq!(after.groups, ["none", "", "sales"]);
        assert_eq!(
            after.group_name(1),
            "finance",
            "rows of a removed group keep its name"
        );
        assert_eq!(after.group_name(0), "none");
        assert_eq!(after.group_numbering(), ["", "finance", "sales"]);
        let mut again = grouped(only_sales, "\"sales\"", "\"sales\"");
        assert!(again.keep_group_numbers(&after.group_numbering()));
        assert_eq!(again, after, "the same files again: the policy in force");

        // A new group takes a number never given; finance, back, takes its own again.
        let hr = "[groups.hr]\nprefixes = [\"10.7.0.0/16\"]\n";
        let mut newcomer = grouped(&format!("{hr}{only_sales}"), "\"hr\"", "\"sales\"");
        assert!(newcomer.keep_group_numbers(&after.group_numbering()));
        assert_eq!(newcomer.groups, ["none", "", "sales", "hr"]);
        assert_eq!(newcomer.rules[0].groups, 1 << 3);
        assert_eq!(source_v4(&newcomer, "10.7.0.0/16"), 3);
        let mut back = grouped(&format!("{hr}{GROUPS}"), "\"finance\"", "\"hr\"");
        assert!(back.keep_group_numbers(&newcomer.group_numbering()));
        assert_eq!(back.groups, ["none", "finance", "sales", "hr"]);
        assert_eq!(back.rules[0].groups, 1 << 1);
        assert_eq!(back.rules[0].except_groups, 1 << 3);
    }

    #[test]
    fn reserved_group_numbers_give_way_when_the_kernel_has_no_other() {
        let mut previous = vec![String::new()];
        previous.extend((1..64).map(|i| format!("gone{i}")));
        let mut policy = grouped(GROUPS, "\"sales\"", "\"finance\"");
        assert!(!policy.keep_group_numbers(&previous));
        assert_eq!(policy.groups, ["none", "finance", "sales"]);
        assert_eq!(policy.rules[0].groups, 1 << 2);
        assert_eq!(policy.group_name(3), "gone3", "the rest stay reserved");
    }
}
