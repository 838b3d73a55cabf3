//! `vigie catalog import`: a vendor's published address list into a catalog entry.
//!
//! Only the entry's `prefixes` and its `[source]` change; comments, domains, ports and layout
//! stay as the operator wrote them. The new file is compiled with the rest of the policy
//! directory before it replaces the old one (atomically, by rename), and a list that lost more
//! than half of its prefixes is refused unless forced: a truncated download must not silently
//! unblock a service.

use std::{
    collections::BTreeSet,
    fs, io,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use serde::Deserialize;
use toml_edit::{Array, DocumentMut, Item, Value, value};

use crate::policy::{self, PolicyErrors};

/// The published formats vigie reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One prefix per line, `#` comments and blank lines allowed (Zoom's published lists,
    /// and any plain CIDR list).
    Cidr,
    /// The Microsoft 365 endpoints web service's JSON: the `ips` of the selected entries.
    M365,
}

/// Which entries of a Microsoft 365 list belong to the service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct M365Selection {
    /// `serviceArea` to keep (Teams media and signalling are in "Skype").
    pub service_area: Option<String>,
    /// Endpoint set ids to keep; empty keeps every id.
    pub ids: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: `{text}` is not an address prefix ({reason})")]
    BadPrefix {
        path: PathBuf,
        line: usize,
        text: String,
        reason: String,
    },
    #[error("{path}: not a Microsoft 365 endpoints list: {reason}")]
    BadJson { path: PathBuf, reason: String },
    #[error("{path}: no prefix in the list{hint}")]
    Empty { path: PathBuf, hint: &'static str },
    #[error("--service `{service}`: {reason}")]
    BadService { service: String, reason: String },
    #[error("{path}: no catalog entry `{service}` (looked for {entry})")]
    NoEntry {
        path: PathBuf,
        service: String,
        entry: PathBuf,
    },
    #[error("{entry}: {reason}")]
    BadEntry { entry: PathBuf, reason: String },
    #[error(
        "{entry}: the new list has {new} prefixes where the catalog has {old}: a list that loses more \
         than half is refused (a truncated download?); check it, then import with --force"
    )]
    Shrinks {
        entry: PathBuf,
        old: usize,
        new: usize,
    },
    #[error("the catalog entry would not compile, nothing was written:\n{0}")]
    Invalid(PolicyErrors),
}

/// Reads a published list.
pub fn read_list(
    path: &Path,
    format: Format,
    selection: &M365Selection,
) -> Result<BTreeSet<IpNet>, ImportError> {
    let text = fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_owned(),
        source,
    })?;
    let list = match format {
        Format::Cidr => parse_cidr(path, &text)?,
        Format::M365 => parse_m365(path, &text, selection)?,
    };
    if list.is_empty() {
        return Err(ImportError::Empty {
            path: path.to_owned(),
            hint: match format {
                Format::Cidr => "",
                Format::M365 => " for this service area and these ids",
            },
        });
    }
    Ok(list)
}

fn parse_cidr(path: &Path, text: &str) -> Result<BTreeSet<IpNet>, ImportError> {
    let mut list = BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        list.insert(prefix(entry).map_err(|reason| ImportError::BadPrefix {
            path: path.to_owned(),
            line: index + 1,
            text: entry.to_owned(),
            reason,
        })?);
    }
    Ok(list)
}

/// A prefix as the catalog wants it: network address only (a bare address is a /32 or /128).
fn prefix(text: &str) -> Result<IpNet, String> {
    let net: IpNet = match text.parse() {
        Ok(net) => net,
        Err(_) => text
            .parse::<std::net::IpAddr>()
            .map(IpNet::from)
            .map_err(|e| e.to_string())?,
    };
    if net.trunc() != net {
        return Err(format!("host bits set: the network is {}", net.trunc()));
    }
    // Refused here too, with the list's line, rather than by the compiler after the rewrite.
    if let Some(ipv4) = policy::syntax::ipv4_mapped(net) {
        return Err(format!(
            "IPv4-mapped IPv6, which no packet is matched against: write {ipv4}"
        ));
    }
    Ok(net)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct M365Entry {
    id: u32,
    service_area: Option<String>,
    #[serde(default)]
    ips: Vec<String>,
}

fn parse_m365(
    path: &Path,
    text: &str,
    selection: &M365Selection,
) -> Result<BTreeSet<IpNet>, ImportError> {
    let entries: Vec<M365Entry> = serde_json::from_str(text).map_err(|e| ImportError::BadJson {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let mut list = BTreeSet::new();
    let chosen = entries.iter().filter(|e| {
        selection
            .service_area
            .as_ref()
            .is_none_or(|area| e.service_area.as_ref() == Some(area))
            && (selection.ids.is_empty() || selection.ids.contains(&e.id))
    });
    for entry in chosen {
        for ip in &entry.ips {
            list.insert(prefix(ip).map_err(|reason| ImportError::BadJson {
                path: path.to_owned(),
                reason: format!("entry {}: `{ip}`: {reason}", entry.id),
            })?);
        }
    }
    Ok(list)
}

/// What an import changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    pub entry: PathBuf,
    pub before: usize,
    pub after: usize,
    pub added: usize,
    pub removed: usize,
}

/// Where the prefixes come from, as the entry's `[source]` will say.
pub struct Provenance<'a> {
    pub vendor: &'a str,
    /// `YYYY-MM-DD`.
    pub retrieved: &'a str,
}

/// Replaces the prefixes of `service` in the policy directory `dir` with `list`.
pub fn import(
    dir: &Path,
    service: &str,
    list: &BTreeSet<IpNet>,
    provenance: &Provenance<'_>,
    force: bool,
) -> Result<Imported, ImportError> {
    // The name becomes a path: `../policy` or `/etc/x` would write outside catalog/. A
    // service id is a catalog file's stem, and only an id can be one.
    policy::syntax::identifier("service id", service).map_err(|e| ImportError::BadService {
        service: service.to_owned(),
        reason: e.to_string(),
    })?;
    let name = Path::new("catalog").join(format!("{service}.toml"));
    let entry = dir.join(&name);
    let text = match fs::read_to_string(&entry) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ImportError::NoEntry {
                path: dir.to_owned(),
                service: service.to_owned(),
                entry,
            });
        }
        Err(source) => {
            return Err(ImportError::Io {
                path: entry,
                source,
            });
        }
    };
    let (rewritten, old) =
        rewrite(&text, list, provenance).map_err(|reason| ImportError::BadEntry {
            entry: entry.clone(),
            reason,
        })?;
    if list.len() * 2 < old.len() && !force {
        return Err(ImportError::Shrinks {
            entry,
            old: old.len(),
            new: list.len(),
        });
    }
    policy::load_dir_with(dir, &name, rewritten.clone()).map_err(ImportError::Invalid)?;
    write_atomically(&entry, &rewritten)?;
    Ok(Imported {
        before: old.len(),
        after: list.len(),
        added: list.difference(&old).count(),
        removed: old.difference(list).count(),
        entry,
    })
}

/// The entry with its prefixes and source replaced, and the prefixes it had.
fn rewrite(
    text: &str,
    list: &BTreeSet<IpNet>,
    provenance: &Provenance<'_>,
) -> Result<(String, BTreeSet<IpNet>), String> {
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let old = doc
        .get("prefixes")
        .and_then(Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut prefixes = Array::new();
    for net in list {
        let mut item = Value::from(net.to_string());
        item.decor_mut().set_prefix("\n    ");
        prefixes.push_formatted(item);
    }
    prefixes.set_trailing("\n");
    prefixes.set_trailing_comma(true);
    doc["prefixes"] = value(prefixes);
    let retrieved: toml_edit::Datetime = provenance
        .retrieved
        .parse()
        .map_err(|e| format!("retrieved date `{}`: {e}", provenance.retrieved))?;
    let source = doc
        .entry("source")
        .or_insert_with(|| Item::Table(toml_edit::Table::new()));
    let Some(source) = source.as_table_like_mut() else {
        return Err("`source` is not a table".to_owned());
    };
    source.insert("vendor", value(provenance.vendor));
    source.insert("retrieved", value(retrieved));
    Ok((doc.to_string(), old))
}

/// Writes beside the target and renames over it: a reader (the daemon reloading the catalog)
/// sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, text: &str) -> Result<(), ImportError> {
    let tmp = path.with_extension("toml.importing");
    let io = |source| ImportError::Io {
        path: path.to_owned(),
        source,
    };
    fs::write(&tmp, text).map_err(io)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = r#"# Zoom: kept comment.
id = "zoom"
name = "Zoom"
operator = "Zoom Video Communications, Inc."
jurisdiction = "US"
category = "conferencing"
prefixes = [
    "3.7.35.0/25",
    "3.21.137.128/25",
]

[source]
vendor = "old list"
retrieved = 2024-06-01
"#;

    fn nets(list: &[&str]) -> BTreeSet<IpNet> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn cidr_lists_skip_comments_and_refuse_host_bits_with_their_line() {
        let list = parse_cidr(
            Path::new("z.txt"),
            "# Zoom\n3.7.35.0/25\n\n2407:30c0::/32 # v6\n52.1.2.3\n",
        )
        .unwrap();
        assert_eq!(
            list,
            nets(&["3.7.35.0/25", "2407:30c0::/32", "52.1.2.3/32"])
        );
        let err = parse_cidr(Path::new("z.txt"), "3.7.35.0/25\n3.7.35.1/25\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "z.txt:2: `3.7.35.1/25` is not an address prefix (host bits set: the network is 3.7.35.0/25)"
        );
        let err = parse_cidr(Path::new("z.txt"), "zoom.us\n").unwrap_err();
        assert!(err.to_string().starts_with("z.txt:1: `zoom.us`"), "{err}");
    }

    #[test]
    fn cidr_lists_refuse_ipv4_mapped_prefixes_with_their_line() {
        let err = parse_cidr(Path::new("z.txt"), "3.7.35.0/25\n::ffff:3.7.36.0/120\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "z.txt:2: `::ffff:3.7.36.0/120` is not an address prefix (IPv4-mapped IPv6, which no \
             packet is matched against: write 3.7.36.0/24)"
        );
        let err = parse_cidr(Path::new("z.txt"), "::ffff:3.7.36.1\n").unwrap_err();
        assert!(err.to_string().ends_with("write 3.7.36.1/32)"), "{err}");
    }

    #[test]
    fn m365_entries_are_selected_by_area_and_id() {
        let json = r#"[
            {"id": 11, "serviceArea": "Skype", "ips": ["13.107.64.0/18", "2603:1063::/38"], "udpPorts": "3478,3479"},
            {"id": 12, "serviceArea": "Skype", "ips": ["52.112.0.0/14"]},
            {"id": 1, "serviceArea": "Exchange", "ips": ["40.96.0.0/13"]},
            {"id": 19, "serviceArea": "Skype", "urls": ["*.teams.microsoft.com"]}
        ]"#;
        let skype = M365Selection {
            service_area: Some("Skype".into()),
            ids: vec![],
        };
        assert_eq!(
            parse_m365(Path::new("m.json"), json, &skype).unwrap(),
            nets(&["13.107.64.0/18", "2603:1063::/38", "52.112.0.0/14"])
        );
        let set_11 = M365Selection {
            ids: vec![11],
            ..skype
        };
        assert_eq!(
            parse_m365(Path::new("m.json"), json, &set_11).unwrap(),
            nets(&["13.107.64.0/18", "2603:1063::/38"])
        );
        let err = parse_m365(Path::new("m.json"), "{\"not\": 1}", &set_11).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("m.json: not a Microsoft 365 endpoints list")
        );
    }

    #[test]
    fn a_service_that_is_not_an_id_is_refused_before_it_names_a_file() {
        let dir = std::env::temp_dir().join(format!("vigie-import-name-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("catalog")).unwrap();
        let policy = "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\n";
        fs::write(dir.join("policy.toml"), policy).unwrap();
        fs::write(dir.join("catalog/zoom.toml"), ENTRY).unwrap();
        let provenance = Provenance {
            vendor: "Zoom.txt",
            retrieved: "2026-11-29",
        };
        let list = nets(&["3.7.35.0/25"]);
        let refused = |service: &str| match import(&dir, service, &list, &provenance, true) {
            Err(e @ ImportError::BadService { .. }) => e.to_string(),
            other => panic!("{service}: {other:?}"),
        };
        // `catalog/../policy.toml` is the policy itself.
        assert_eq!(
            refused("../policy"),
            "--service `../policy`: service id `../policy` may only use a-z, 0-9 and '-'"
        );
        for service in ["/tmp/zoom", "zoom/../zoom", "zoom.toml", "Zoom", ""] {
            refused(service);
        }
        assert_eq!(
            refused("none"),
            "--service `none`: service id `none` is reserved: it names the absence of a service id"
        );
        assert_eq!(fs::read_to_string(dir.join("policy.toml")).unwrap(), policy);
        // An id is imported as before.
        let done = import(&dir, "zoom", &list, &provenance, true).unwrap();
        assert_eq!((done.before, done.after), (2, 1));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rewriting_keeps_everything_but_prefixes_and_source() {
        let provenance = Provenance {
            vendor: "Zoom.txt",
            retrieved: "2026-11-29",
        };
        let (text, old) =
            rewrite(ENTRY, &nets(&["3.7.35.0/25", "8.5.128.0/23"]), &provenance).unwrap();
        assert_eq!(old, nets(&["3.7.35.0/25", "3.21.137.128/25"]));
        assert!(
            text.starts_with("# Zoom: kept comment.\nid = \"zoom\"\n"),
            "{text}"
        );
        assert!(
            text.contains("prefixes = [\n    \"3.7.35.0/25\",\n    \"8.5.128.0/23\",\n]\n"),
            "{text}"
        );
        assert!(
            text.contains("vendor = \"Zoom.txt\"\nretrieved = 2026-11-29\n"),
            "{text}"
        );
    }
}
