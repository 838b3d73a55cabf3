//! The schema of `policy.toml`, as written. Values stay strings here and are checked by the
//! compiler, so that one file gets all its errors instead of the parser's first one.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::{
    Spanned,
    de::{DeString, DeValue},
};

use super::{
    diagnostic::{Report, SourceText},
    problem::Problem,
    syntax::PortSpec,
};

/// A list whose place matters as a whole (`services = []` is an error at the brackets).
pub(super) type Names = Option<Spanned<Vec<Spanned<String>>>>;

/// `policy.toml`, read section by section: each group and each rule is read on its own, so that
/// a mistake in one (an unknown key, a wrong type) does not hide the problems of the others.
#[derive(Debug, Default)]
pub(super) struct PolicyFile {
    /// `None` when `[settings]` is missing or does not read (already reported).
    pub settings: Option<SettingsTable>,
    pub groups: BTreeMap<Spanned<String>, GroupTable>,
    /// `[country_sets]`: name to country codes and built-in sets.
    pub country_sets: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
    /// `None` for a rule that does not read (already reported); the span is its `[[rule]]`.
    pub rules: Vec<Spanned<Option<RuleTable>>>,
}

impl PolicyFile {
    pub fn read(src: &SourceText<'_>, report: &mut Report) -> Option<Self> {
        let document = src.document(report)?;
        let mut file = Self::default();
        let mut has_settings = false;
        for (key, value) in document.into_inner() {
            match key.as_ref().as_ref() {
                "settings" => {
                    has_settings = true;
                    file.settings = src.value(value, report);
                }
                "groups" => file.groups = read_groups(value, src, report),
                "country_sets" => {
                    file.country_sets = src.value(value, report).unwrap_or_default();
                }
                "rule" => file.rules = read_rules(value, src, report),
                other => report.error(&src.at(&key), Problem::UnknownSection(other.to_owned())),
            }
        }
        if !has_settings {
            report.error(&src.place(0..0), Problem::MissingSettings);
        }
        Some(file)
    }
}

fn read_groups(
    value: Spanned<DeValue<'_>>,
    src: &SourceText<'_>,
    report: &mut Report,
) -> BTreeMap<Spanned<String>, GroupTable> {
    let place = src.at(&value);
    let DeValue::Table(groups) = value.into_inner() else {
        report.error(
            &place,
            Problem::NotA {
                key: "groups",
                expected: "a table of groups: write [groups.<name>]",
            },
        );
        return BTreeMap::new();
    };
    let group = |(name, table): (Spanned<DeString<'_>>, _)| {
        // A group that does not read still exists: rules that name it get no second error.
        let table = src.value(table, report).unwrap_or_default();
        (
            Spanned::new(name.span(), name.into_inner().into_owned()),
            table,
        )
    };
    groups.into_iter().map(group).collect()
}

fn read_rules(
    value: Spanned<DeValue<'_>>,
    src: &SourceText<'_>,
    report: &mut Report,
) -> Vec<Spanned<Option<RuleTable>>> {
    let place = src.at(&value);
    let DeValue::Array(rules) = value.into_inner() else {
        report.error(
            &place,
            Problem::NotA {
                key: "rule",
                expected: "an array of tables: write [[rule]]",
            },
        );
        return Vec::new();
    };
    rules
        .iter()
        .map(|rule| Spanned::new(rule.span(), src.value(rule.clone(), report)))
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingsTable {
    pub mode: Spanned<String>,
    pub default: Spanned<String>,
    pub unparsed: Spanned<String>,
    /// The country database for `countries`, relative to the policy directory; default
    /// `geoip/geo-whois-asn-country.mmdb`.
    #[serde(default)]
    pub geoip: Option<Spanned<String>>,
    /// A GeoLite2-ASN-layout database, relative to the policy directory: the `asns` of the
    /// catalog are expanded to the prefixes it lists for them. Without it, `asns` are unused.
    #[serde(default)]
    pub asn_db: Option<Spanned<String>>,
    /// Catalog data older than this many days gets a warning from `vigie check` and at start.
    #[serde(default)]
    pub stale_after_days: Option<Spanned<u32>>,
    /// Bounds, in seconds, of how long an address learned from DNS counts: the response's TTL
    /// clamped between them.
    #[serde(default)]
    pub dns_min_ttl: Option<Spanned<u32>>,
    #[serde(default)]
    pub dns_max_ttl: Option<Spanned<u32>>,
    /// Addresses learned from DNS kept at once; the ones expiring first go first.
    #[serde(default)]
    pub dns_max_entries: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupTable {
    pub prefixes: Vec<Spanned<String>>,
    /// For the people who read the policy; the compiler ignores it.
    #[serde(default)]
    #[expect(dead_code, reason = "read by people, not by the compiler")]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleTable {
    pub name: Spanned<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "read by people, not by the compiler")]
    pub description: Option<String>,
    #[serde(default)]
    pub services: Names,
    #[serde(default)]
    pub categories: Names,
    #[serde(default)]
    pub jurisdictions: Names,
    /// The destination's country (GeoIP): codes and country sets.
    #[serde(default)]
    pub countries: Names,
    #[serde(default)]
    pub unknown: Option<Spanned<bool>>,
    #[serde(default)]
    pub groups: Names,
    #[serde(default)]
    pub except_groups: Names,
    #[serde(default)]
    pub proto: Option<Spanned<String>>,
    #[serde(default)]
    pub ports: Option<Spanned<PortSpec>>,
    pub action: Spanned<String>,
    /// The rule's own mode, over the policy's: "enforce" or "monitor".
    #[serde(default)]
    pub mode: Option<Spanned<String>>,
}

impl RuleTable {
    /// Whether the rule names destinations by service, category or jurisdiction.
    pub fn selects_services(&self) -> bool {
        self.services.is_some() || self.categories.is_some() || self.jurisdictions.is_some()
    }
}
