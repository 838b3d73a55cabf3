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
        self.services.get(id as usize).map(|s| s.id.as_str())
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
