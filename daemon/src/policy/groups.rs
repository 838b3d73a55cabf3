//! `[groups.<name>]`: source groups (departments, sites) and the prefixes of their hosts.
//! Ids follow name order from 1; 0 is "none", the group of a source in no group.

use std::collections::{BTreeMap, HashMap, hash_map::Entry};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use toml::Spanned;
use vigie_common::limits;

use super::{
    aggregate::aggregate,
    diagnostic::{Place, Report, SourceText},
    file::GroupTable,
    problem::Problem,
    syntax,
};

pub(super) struct Groups {
    /// Index = kernel group id.
    pub names: Vec<String>,
    pub sources_v4: Vec<(Ipv4Net, u32)>,
    pub sources_v6: Vec<(Ipv6Net, u32)>,
    /// Each prefix the groups hold, in the order written (groups in name order), with its
    /// place: which one goes past the kernel's table, when the groups hold too many.
    pub written: Vec<(IpNet, Place)>,
}

impl Groups {
    pub fn id(&self, name: &str) -> Option<u32> {
        self.names
            .iter()
            .skip(1)
            .position(|n| n == name)
            .map(|i| i as u32 + 1)
    }
}

pub(super) fn compile(
    table: &BTreeMap<Spanned<String>, GroupTable>,
    src: &SourceText<'_>,
    report: &mut Report,
) -> Groups {
    let mut sources = Sources::default();
    let mut names = vec!["none".to_owned()];
    for (name, group) in table {
        let place = src.at(name);
        report.take(&place, syntax::identifier("group", name.as_ref()));
        let id = names.len() as u32;
        if id == limits::MAX_GROUPS {
            report.error(
                &place,
                Problem::TooMany {
                    what: "groups",
                    limit: limits::MAX_GROUPS - 1,
                },
            );
        }
        if group.prefixes.is_empty() {
            report.warn(&place, Problem::EmptyGroup(name.as_ref().clone()));
        }
        for prefix in &group.prefixes {
            sources.add(prefix, name.as_ref(), id, src, report);
        }
        names.push(name.as_ref().clone());
    }
    Groups {
        names,
        sources_v4: aggregate(sources.v4),
        sources_v6: aggregate(sources.v6),
        written: sources.written,
    }
}

/// The source tries being built. One prefix belongs to one group: the kernel's trie holds
/// one value per prefix, and two claims are a mistake to fix, not to settle silently.
#[derive(Default)]
struct Sources {
    owners: HashMap<IpNet, (String, Place)>,
    v4: BTreeMap<Ipv4Net, u32>,
    v6: BTreeMap<Ipv6Net, u32>,
    written: Vec<(IpNet, Place)>,
}

impl Sources {
    fn add(
        &mut self,
        text: &Spanned<String>,
        group: &str,
        id: u32,
        src: &SourceText<'_>,
        report: &mut Report,
    ) {
        let place = src.at(text);
        let Some(net) = report.take(&place, syntax::prefix(text.as_ref())) else {
            return;
        };
        match self.owners.entry(net) {
            Entry::Occupied(first) if first.get().0 == group => {
                report.warn(
                    &place,
                    Problem::ListedTwice {
                        what: "prefix",
                        value: net.to_string(),
                    },
                );
            }
            Entry::Occupied(first) => {
                let (owner, first_place) = first.get().clone();
                let problem = Problem::DuplicateGroupPrefix {
                    prefix: net.to_string(),
                    group: owner,
                    first: first_place,
                };
                report.error(&place, problem);
            }
            Entry::Vacant(slot) => {
                self.written.push((net, place.clone()));
                slot.insert((group.to_owned(), place));
                match net {
                    IpNet::V4(n) => self.v4.insert(n, id),
                    IpNet::V6(n) => self.v6.insert(n, id),
                };
            }
        }
    }
}
