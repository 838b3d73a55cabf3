//! The schema of a catalog file, `catalog/<id>.toml`, as written.

use serde::Deserialize;
use toml::{Spanned, value::Datetime};

use crate::policy::syntax::PortSpec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServiceFile {
    pub id: Spanned<String>,
    pub name: Spanned<String>,
    pub operator: Spanned<String>,
    pub jurisdiction: Spanned<String>,
    pub category: Spanned<String>,
    #[serde(default)]
    pub sovereign: bool,
    #[serde(default)]
    pub domains: Vec<Spanned<String>>,
    #[serde(default)]
    pub asns: Vec<u32>,
    #[serde(default)]
    pub stun_attributes: Vec<Spanned<u16>>,
    pub source: SourceTable,
    #[serde(default)]
    pub ports: Vec<PortsTable>,
    #[serde(default)]
    pub prefixes: Vec<Spanned<String>>,
}

/// Where the data came from and when: the age of address lists matters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceTable {
    pub vendor: Spanned<String>,
    pub retrieved: Spanned<Datetime>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PortsTable {
    pub proto: Spanned<String>,
    pub range: Spanned<PortSpec>,
    /// The ports are the vendor's own: a flow to one of them that nothing stronger explains
    /// is taken as the service's (weaker evidence, `port`).
    #[serde(default)]
    pub signal: Option<Spanned<bool>>,
}
