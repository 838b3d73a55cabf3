//! What the kernel says is attached, independently of vigie's own account: `bpftool net show`
//! in the gateway namespace (XDP, and TC through clsact) and `bpftool link show` (every BPF
//! link, TCX included). Links are global objects: the lab keeps those whose program has one of
//! the names of the programs vigie pinned, on the gateway's interface where bpftool tells.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::topology::Topology;

/// One program attached to an interface, as `bpftool net show dev DEV` lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NetProgram {
    /// "xdp", or the TC attach kind ("clsact/ingress", "tcx/egress"...).
    pub kind: String,
    pub name: String,
    pub id: u64,
}

/// One BPF link.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link {
    pub id: u64,
    pub prog_id: u64,
    pub prog_name: String,
    /// The link type ("xdp", "tcx"...; a number when bpftool does not know it).
    pub kind: String,
    pub attach_type: String,
    pub ifindex: Option<u64>,
}

fn bpftool_json(topo: &Topology, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    let out = topo.exec(topo.gw(), "bpftool", &all)?;
    if !out.status.success() {
        bail!(
            "bpftool {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(&text)
        .with_context(|| format!("bpftool {}: not JSON: {text}", args.join(" ")))
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(
        || {
            if v.is_null() {
                String::new()
            } else {
                v.to_string()
            }
        },
        str::to_owned,
    )
}

/// Programs attached to `dev` in the gateway namespace.
pub fn net_programs(topo: &Topology, dev: &str) -> anyhow::Result<Vec<NetProgram>> {
    let doc = bpftool_json(topo, &["net", "show", "dev", dev])?;
    let names = prog_names(topo)?;
    let sections = doc
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object);
    let mut found: Vec<NetProgram> = sections
        .flat_map(|section| section.iter())
        .flat_map(|(key, entries)| {
            let entries = entries.as_array().into_iter().flatten();
            entries.map(|e| net_program(key, e, &names))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// One entry of a `bpftool net show` section ("xdp", "tc", ...).
fn net_program(section: &str, entry: &Value, names: &BTreeMap<u64, String>) -> NetProgram {
    let kind = if section == "tc" {
        text(&entry["kind"])
    } else {
        section.to_owned()
    };
    let id = entry["id"]
        .as_u64()
        .or_else(|| entry["prog_id"].as_u64())
        .unwrap_or_default();
    // bpftool 7.1 gives XDP entries an id but no name.
    let name = Some(text(&entry["name"]))
        .filter(|n| !n.is_empty())
        .or_else(|| names.get(&id).cloned())
        .unwrap_or_default();
    NetProgram { kind, name, id }
}

fn prog_names(topo: &Topology) -> anyhow::Result<BTreeMap<u64, String>> {
    let doc = bpftool_json(topo, &["prog", "show"])?;
    Ok(doc
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_u64()?, text(&p["name"]))))
        .collect())
}

fn link_of(v: &Value, names: &BTreeMap<u64, String>) -> Option<Link> {
    let prog_id = v["prog_id"].as_u64()?;
    Some(Link {
        id: v["id"].as_u64()?,
        prog_id,
        prog_name: names.get(&prog_id).cloned().unwrap_or_default(),
        kind: link_type(&v["type"]),
        attach_type: text(&v["attach_type"]),
        ifindex: v["ifindex"].as_u64(),
    })
}

/// The link type's name; bpftool before 7.3 prints the types it does not know as numbers.
fn link_type(v: &Value) -> String {
    match v.as_u64() {
        Some(TCX_LINK_TYPE) => "tcx".to_owned(),
        _ => text(v),
    }
}

/// `BPF_LINK_TYPE_TCX` in the kernel's UAPI.
const TCX_LINK_TYPE: u64 = 11;

/// Every BPF link of the machine.
pub fn links(topo: &Topology) -> anyhow::Result<Vec<Link>> {
    let names = prog_names(topo)?;
    let doc = bpftool_json(topo, &["link", "show"])?;
    Ok(doc
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| link_of(l, &names))
        .collect())
}

/// The link pinned at `path`.
pub fn pinned_link(topo: &Topology, path: &Path) -> anyhow::Result<Link> {
    let names = prog_names(topo)?;
    let path = path.to_string_lossy();
    let doc = bpftool_json(topo, &["link", "show", "pinned", &path])?;
    let one = if doc.is_array() {
        doc.get(0).cloned().unwrap_or_default()
    } else {
        doc
    };
    link_of(&one, &names).with_context(|| format!("no link pinned at {path}"))
}

/// The interface index of `dev` in the gateway namespace.
pub fn ifindex(topo: &Topology, dev: &str) -> anyhow::Result<u64> {
    let out = topo.exec(topo.gw(), "ip", &["-j", "link", "show", "dev", dev])?;
    let doc: Value = serde_json::from_slice(&out.stdout).context("ip -j link show")?;
    doc[0]["ifindex"]
        .as_u64()
        .with_context(|| format!("no ifindex for {dev}"))
}

/// Every link pinned under `pin_dir` (any depth).
pub fn pinned_links(topo: &Topology, pin_dir: &Path) -> anyhow::Result<Vec<Link>> {
    let dir = pin_dir.join("links");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(found);
    };
    for entry in entries {
        found.push(pinned_link(topo, &entry?.path())?);
    }
    found.sort();
    Ok(found)
}

/// The links of programs named `prog_names` that are on `dev` of the gateway, or whose
/// interface bpftool cannot tell (bpftool before 7.3 shows a TCX link's type as a number and
/// nothing of where it is attached). Links are kernel-wide and interface indexes repeat across
/// namespaces: the count is exact only while no other lab runs vigie (callers serialise).
pub fn links_on(topo: &Topology, dev: &str, prog_names: &[String]) -> anyhow::Result<Vec<Link>> {
    let index = ifindex(topo, dev)?;
    let mut found: Vec<Link> = links(topo)?
        .into_iter()
        .filter(|l| l.ifindex.is_none_or(|i| i == index) && prog_names.contains(&l.prog_name))
        .collect();
    found.sort();
    Ok(found)
}
