//! `vigie catalog list`: each service, what the catalog knows of it, and how old that is.

use std::{fmt, time::SystemTime};

use serde::Serialize;
use toml::value::Date;

use super::Catalog;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub id: String,
    pub operator: String,
    pub jurisdiction: String,
    pub sovereign: bool,
    pub prefixes: usize,
    pub domains: usize,
    pub vendor: String,
    /// `YYYY-MM-DD`.
    pub retrieved: String,
    /// Whole days from `retrieved` to today (negative if the date is in the future).
    pub age_days: i64,
}

#[must_use]
pub fn rows(catalog: &Catalog, today: Date) -> Vec<Row> {
    catalog
        .services()
        .map(|(_, s)| Row {
            id: s.id.clone(),
            operator: s.operator.clone(),
            jurisdiction: s.jurisdiction.clone(),
            sovereign: s.sovereign,
            prefixes: s.prefixes.len(),
            domains: s.domains.len(),
            vendor: s.source.vendor.clone(),
            retrieved: s.source.retrieved.to_string(),
            age_days: days(today) - days(s.source.retrieved),
        })
        .collect()
}

/// A warning for each service whose data is older than `max_days`, at the place of its id, and
/// for each whose `retrieved` date is after today, at the date.
///
/// A date in the future is a typo (of the year, most often) or a guess, and such data would
/// never be found stale. It is a warning, not an error, like the age: both depend on the
/// clock, and a machine whose clock is wrong must not lose its policy over it.
#[must_use]
pub fn stale(catalog: &Catalog, today: Date, max_days: u32) -> Vec<String> {
    catalog
        .services()
        .filter_map(|(_, s)| {
            let age = days(today) - days(s.source.retrieved);
            if age < 0 {
                return Some(format!(
                    "{}: the data of `{}` was retrieved {}, {} days from today ({today}): a date \
                     in the future is a mistake, and its data would never be found stale; write \
                     the day it was retrieved",
                    s.places.retrieved,
                    s.id,
                    s.source.retrieved,
                    -age
                ));
            }
            (age > i64::from(max_days)).then(|| {
                format!(
                    "{}: the data of `{}` was retrieved {} ({age} days ago, more than the {max_days} \
                     of stale_after_days): refresh it from the vendor (vigie catalog import)",
                    s.place, s.id, s.source.retrieved
                )
            })
        })
        .collect()
}

/// Today's date in UTC.
#[must_use]
pub fn today() -> Date {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    // RFC 3339 from humantime always starts `YYYY-MM-DD`.
    Date {
        year: stamp[0..4].parse().unwrap_or(1970),
        month: stamp[5..7].parse().unwrap_or(1),
        day: stamp[8..10].parse().unwrap_or(1),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days(date: Date) -> i64 {
    let (y, m, d) = (
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The rows as a table.
pub struct Table<'a>(pub &'a [Row]);

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:<4} {:<9} {:>8} {:>7} {:<10} {:>8}  source",
            "service", "juri", "sovereign", "prefixes", "domains", "retrieved", "age"
        )?;
        for r in self.0 {
            writeln!(
                f,
                "{:<12} {:<4} {:<9} {:>8} {:>7} {:<10} {:>7}d  {}",
                r.id,
                r.jurisdiction,
                if r.sovereign { "yes" } else { "no" },
                r.prefixes,
                r.domains,
                r.retrieved,
                r.age_days,
                r.vendor
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: u16, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    #[test]
    fn days_count_across_leap_years() {
        assert_eq!(days(date(1970, 1, 1)), 0);
        assert_eq!(days(date(2000, 3, 1)) - days(date(2000, 2, 28)), 2);
        assert_eq!(days(date(2026, 11, 29)) - days(date(2024, 6, 1)), 911);
    }

    #[test]
    fn today_is_a_real_date() {
        let t = today();
        assert!(t.year >= 2024 && (1..=12).contains(&t.month) && (1..=31).contains(&t.day));
    }
}
