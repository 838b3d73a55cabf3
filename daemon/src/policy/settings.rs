//! `[settings]`: the mode, the default action, what an unparsable packet gets.

use toml::Spanned;
use vigie_common::{action, policy::Settings};

use super::{
    diagnostic::{Report, SourceText},
    file::SettingsTable,
    problem::Problem,
};

/// Settings with `generation` 0 and `rule_count` 0: the map writer sets both.
pub(super) fn compile(
    table: &SettingsTable,
    src: &SourceText<'_>,
    report: &mut Report,
) -> Settings {
    let mode = report.take(&src.at(&table.mode), mode(&table.mode));
    let default_action = report.take(&src.at(&table.default), rule_action(&table.default));
    let mut unparsed_action = report.take(&src.at(&table.unparsed), unparsed(&table.unparsed));
    // Monitor mode promises that vigie drops nothing: an unparsable packet passes (and is still
    // counted by reason), whatever `unparsed` says for the day the policy enforces.
    if mode == Some(action::mode::MONITOR) && unparsed_action.is_some_and(action::blocks) {
        report.warn(&src.at(&table.unparsed), Problem::UnparsedMonitored);
        unparsed_action = Some(action::ALLOW);
    }
    Settings {
        mode: mode.unwrap_or(action::mode::ENFORCE),
        default_action: default_action.unwrap_or(action::ALLOW),
        unparsed_action: unparsed_action.unwrap_or(action::ALLOW),
        ..Settings::default()
    }
}

fn mode(value: &Spanned<String>) -> Result<u32, Problem> {
    match value.as_ref().as_str() {
        "enforce" => Ok(action::mode::ENFORCE),
        "monitor" => Ok(action::mode::MONITOR),
        other => Err(Problem::BadMode(other.to_owned())),
    }
}

/// The action of a rule or of the default: `block` drops silently, `reject` answers (a TCP
/// reset, an ICMP port unreachable) so that applications fail at once.
pub(super) fn rule_action(value: &Spanned<String>) -> Result<u32, Problem> {
    match value.as_ref().as_str() {
        "allow" => Ok(action::ALLOW),
        "block" => Ok(action::DROP),
        "monitor" => Ok(action::MONITOR),
        "reject" => Ok(action::REJECT),
        other => Err(Problem::BadAction {
            value: other.to_owned(),
            allowed: "allow, block, reject, monitor",
        }),
    }
}

/// A rule's `mode`, as the bits that override the policy's (`action::rule_mode`).
pub(super) fn rule_mode(value: &str) -> Result<u32, Problem> {
    match value {
        "enforce" => Ok(action::rule_mode::ENFORCE),
        "monitor" => Ok(action::rule_mode::MONITOR),
        other => Err(Problem::BadMode(other.to_owned())),
    }
}

/// An unparsable packet has no flow to monitor: it passes or it is dropped.
fn unparsed(value: &Spanned<String>) -> Result<u32, Problem> {
    match value.as_ref().as_str() {
        "allow" => Ok(action::ALLOW),
        "block" => Ok(action::DROP),
        other => Err(Problem::BadAction {
            value: other.to_owned(),
            allowed: "allow, block",
        }),
    }
}
