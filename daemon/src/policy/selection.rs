//! Which destinations a rule is about. The services it names and the services of the categories
//! it names form one set (their union); `jurisdictions` narrows that set to the services whose
//! operator is under one of the listed jurisdictions, or, alone, selects those services.

use std::collections::BTreeSet;

use toml::Spanned;

use super::{
    countries::Sets,
    diagnostic::{Report, SourceText},
    file::{Names, RuleTable},
    problem::Problem,
    syntax,
};
use crate::catalog::Catalog;

/// The member states of the European Union (ISO 3166-1 alpha-2), for the `eu` and `non-eu`
/// jurisdiction sets.
pub const EU_MEMBERS: [&str; 27] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Selection {
    /// Any destination, recognised or not.
    Any,
    /// Destinations recognised as one of these services (kernel ids).
    Services(BTreeSet<u32>),
    /// Destinations whose service was not recognised (`unknown = true`).
    Unrecognised,
}

type Context<'a, 'b> = (&'a Catalog, &'a SourceText<'b>, &'a Sets);

pub(super) fn select(
    rule: &RuleTable,
    catalog: &Catalog,
    sets: &Sets,
    src: &SourceText<'_>,
    report: &mut Report,
) -> Selection {
    let cx = (catalog, src, sets);
    if let Some(unknown) = &rule.unknown {
        if *unknown.as_ref() {
            if rule.selects_services() {
                report.error(&src.at(unknown), Problem::UnknownWithServices);
            }
            return Selection::Unrecognised;
        }
        // Read as "recognised flows only" by some and as "any flow" by others, and the kernel
        // has no condition for the first: refused, so that no one is surprised.
        report.error(&src.at(unknown), Problem::UnknownFalse);
    }
    let services = names(&rule.services, "services", cx, report, by_service);
    let categories = names(&rule.categories, "categories", cx, report, by_category);
    let jurisdictions = names(
        &rule.jurisdictions,
        "jurisdictions",
        cx,
        report,
        by_jurisdiction,
    );
    let named = match (services, categories) {
        (None, None) => None,
        (a, b) => Some(
            a.unwrap_or_default()
                .union(&b.unwrap_or_default())
                .copied()
                .collect(),
        ),
    };
    match (named, jurisdictions) {
        (None, None) => Selection::Any,
        (Some(set), None) | (None, Some(set)) => Selection::Services(set),
        (Some(named), Some(within)) => {
            Selection::Services(named.intersection(&within).copied().collect())
        }
    }
}

/// The union of what each name of an optional list selects; an empty list is an error.
fn names(
    list: &Names,
    key: &'static str,
    cx: Context<'_, '_>,
    report: &mut Report,
    lookup: fn(&Spanned<String>, Context<'_, '_>, &mut Report) -> BTreeSet<u32>,
) -> Option<BTreeSet<u32>> {
    let list = list.as_ref()?;
    if list.as_ref().is_empty() {
        report.error(&cx.1.at(list), Problem::EmptyList(key));
    }
    Some(
        list.as_ref()
            .iter()
            .flat_map(|name| lookup(name, cx, report))
            .collect(),
    )
}

fn by_service(
    name: &Spanned<String>,
    (catalog, src, _): Context<'_, '_>,
    report: &mut Report,
) -> BTreeSet<u32> {
    let id = name.as_ref();
    match catalog.kernel_id(id) {
        Some(kernel_id) => BTreeSet::from([kernel_id]),
        // A broken catalog file already has its errors: naming it is not a second one.
        None if catalog.is_broken(id) => BTreeSet::new(),
        None => {
            report.error(&src.at(name), Problem::UnknownService(id.clone()));
            BTreeSet::new()
        }
    }
}

fn by_category(
    name: &Spanned<String>,
    (catalog, src, _): Context<'_, '_>,
    report: &mut Report,
) -> BTreeSet<u32> {
    let category = name.as_ref();
    if report
        .take(&src.at(name), syntax::category(category))
        .is_none()
    {
        return BTreeSet::new();
    }
    let found = matching(catalog, |s| s.category == *category);
    if found.is_empty() && !catalog.has_broken() {
        report.error(&src.at(name), Problem::UnknownCategory(category.clone()));
    }
    found
}

/// The services whose operator is under a jurisdiction of the set `name` (a country code, a
/// country set, or `non-` and a set).
fn by_jurisdiction(
    name: &Spanned<String>,
    (catalog, src, sets): Context<'_, '_>,
    report: &mut Report,
) -> BTreeSet<u32> {
    let Some(set) = sets.resolve(name.as_ref()) else {
        let problem = syntax::unassigned_country(name.as_ref())
            .unwrap_or_else(|| Problem::BadJurisdictionSet(name.as_ref().clone()));
        report.error(&src.at(name), problem);
        return BTreeSet::new();
    };
    let found = matching(catalog, |s| set.contains(&s.jurisdiction));
    if found.is_empty() {
        report.warn(
            &src.at(name),
            Problem::UnusedJurisdiction(name.as_ref().clone()),
        );
    }
    found
}

fn matching(catalog: &Catalog, test: impl Fn(&crate::catalog::Service) -> bool) -> BTreeSet<u32> {
    catalog
        .services()
        .filter(|(_, s)| test(s))
        .map(|(id, _)| id)
        .collect()
}
