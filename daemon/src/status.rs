//! `vigie status` and `vigie detach`: read and remove what a pin directory holds, without
//! loading anything.

use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::path::Path;

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use serde::Serialize;
use vigie_common::{
    counters::stat,
    flow::{FlowEntry, FlowKey},
    learned::{LearnedEndpoint, LearnedKey},
    limits, maps as names,
    policy::ActivePolicy,
};

use crate::{
    loader::{self, Attachment},
    pins,
};

#[derive(Debug, Serialize)]
pub struct Status {
    pub pin_dir: String,
    pub generation: u32,
    pub active_slot: u32,
    pub attachments: Vec<AttachmentStatus>,
    pub daemon_pid: Option<u32>,
    pub daemon_running: bool,
    pub policy_digest: Option<String>,
    pub policy_source: Option<String>,
    pub flows: usize,
    pub flow_capacity: u32,
    /// Addresses learned from DNS in force in the active slot (expired ones the daemon has
    /// not swept yet included).
    pub learned_endpoints: usize,
    /// The datapath's statistics (`stat::NAMES`), summed over CPUs, since it was loaded.
    pub stats: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
pub struct AttachmentStatus {
    #[serde(flatten)]
    pub attachment: Attachment,
    /// Its pinned link is present (always false for netlink attachments, which have none).
    pub link_present: bool,
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub fn read(pin_dir: &Path) -> Result<Status> {
    let state = pins::read_state(pin_dir)?.unwrap_or_default();
    let active = open_map(pin_dir, names::ACTIVE_POLICY)
        .and_then(|m| Array::<MapData, ActivePolicy>::try_from(Map::Array(m)).ok())
        .and_then(|a| a.get(&0, 0).ok())
        .unwrap_or_default();
    let flows = open_map(pin_dir, names::FLOWS)
        .and_then(|m| BpfHashMap::<MapData, FlowKey, FlowEntry>::try_from(Map::LruHashMap(m)).ok())
        .map_or(0, |f| f.keys().flatten().count());
    let learned_endpoints = open_map(pin_dir, names::LEARNED)
        .and_then(|m| {
            BpfHashMap::<MapData, LearnedKey, LearnedEndpoint>::try_from(Map::LruHashMap(m)).ok()
        })
        .map_or(0, |table| {
            table
                .keys()
                .flatten()
                .filter(|k| u32::from(k.slot) == active.slot)
                .count()
        });
    let datapath = open_map(pin_dir, names::STATS)
        .and_then(|m| PerCpuArray::<MapData, u64>::try_from(Map::PerCpuArray(m)).ok())
        .map(|array| {
            (0..stat::COUNT)
                .map(|i| {
                    let sum = array.get(&i, 0).map_or(0, |per_cpu| per_cpu.iter().sum());
                    (stat::NAMES[i as usize], sum)
                })
                .collect()
        })
        .unwrap_or_default();
    let attachments = state
        .attachments
        .into_iter()
        .map(|a| {
            let link_present = a.link.as_ref().is_some_and(|l| l.exists());
            AttachmentStatus {
                attachment: a,
                link_present,
            }
        })
        .collect();
    Ok(Status {
        pin_dir: pin_dir.display().to_string(),
        generation: active.generation,
        active_slot: active.slot,
        attachments,
        daemon_pid: state.daemon_pid,
        daemon_running: running_daemon(pin_dir, state.daemon_pid).is_some(),
        policy_digest: state.policy_digest,
        policy_source: state.policy_source,
        flows,
        flow_capacity: limits::FLOW_CAPACITY,
        learned_endpoints,
        stats: datapath,
    })
}

fn open_map(pin_dir: &Path, name: &str) -> Option<MapData> {
    let path = pins::map_path(pin_dir, name);
    path.exists()
        .then(|| MapData::from_pin(&path).ok())
        .flatten()
}

pub fn print(status: &Status, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(status)?);
        return Ok(());
    }
    println!("pin directory   {}", status.pin_dir);
    println!(
        "policy          generation {} (slot {})",
        status.generation, status.active_slot
    );
    if let Some(source) = &status.policy_source {
        println!("policy source   {source}");
    }
    if let Some(digest) = &status.policy_digest {
        println!("policy digest   {digest}");
    }
    let daemon = match (status.daemon_pid, status.daemon_running) {
        (Some(pid), true) => format!("running (pid {pid})"),
        _ => "not running (enforcement continues from the pinned state)".to_owned(),
    };
    println!("daemon          {daemon}");
    println!(
        "flows           {} of {}",
        status.flows, status.flow_capacity
    );
    println!("learned (DNS)   {} addresses", status.learned_endpoints);
    let nonzero: Vec<String> = status
        .stats
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if !nonzero.is_empty() {
        println!("datapath        {}", nonzero.join(", "));
    }
    if status.attachments.is_empty() {
        println!("attachments     none");
    }
    for a in &status.attachments {
        let link = if a.link_present { "pinned" } else { "no link" };
        println!(
            "attachment      {} {} {:?} {} ({link})",
            a.attachment.iface, a.attachment.point, a.attachment.direction, a.attachment.program
        );
    }
    Ok(())
}

/// The daemon that runs for this pin directory: the one holding its claim (a killed daemon's
/// pid, left in the state file, may have been given to another process since); without a
/// claim file (a daemon of an earlier version), the state's pid if it is alive.
fn running_daemon(pin_dir: &Path, state_pid: Option<u32>) -> Option<u32> {
    match pins::claimant(pin_dir) {
        Some(holder) => holder,
        None => state_pid.filter(|&p| pid_alive(p)),
    }
}

/// Stops a running daemon of this pin directory, then removes attachments, pins and maps.
pub fn detach(pin_dir: &Path) -> Result<Vec<Attachment>> {
    let pid = pins::read_state(pin_dir)?.and_then(|s| s.daemon_pid);
    if let Some(pid) = running_daemon(pin_dir, pid) {
        stop_daemon(pid);
    }
    loader::detach(pin_dir).with_context(|| format!("detaching {}", pin_dir.display()))
}

fn stop_daemon(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let target = nix::unistd::Pid::from_raw(raw);
    if nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM).is_err() {
        return;
    }
    for _ in 0..50 {
        if !pid_alive(pid) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
