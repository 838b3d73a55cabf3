//! `vigie catalog list` and `vigie catalog import`, run as an operator runs them, on a copy of
//! the shipped policy directory.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

const VIGIE: &str = env!("CARGO_BIN_EXE_vigie");

/// A private copy of `policies/` (policy.toml and catalog/), removed on drop.
struct PolicyCopy(PathBuf);

impl PolicyCopy {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vigie-catalog-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("catalog")).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        fs::copy(shipped.join("policy.toml"), dir.join("policy.toml")).unwrap();
        for entry in fs::read_dir(shipped.join("catalog")).unwrap() {
            let path = entry.unwrap().path();
            fs::copy(&path, dir.join("catalog").join(path.file_name().unwrap())).unwrap();
        }
        Self(dir)
    }

    fn entry(&self, service: &str) -> String {
        fs::read_to_string(self.0.join("catalog").join(format!("{service}.toml"))).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for PolicyCopy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn vigie(args: &[&str]) -> Output {
    Command::new(VIGIE).args(args).output().unwrap()
}

/// `vigie catalog import` of `file` into `service` of the copy, with more arguments.
fn import(copy: &PolicyCopy, service: &str, format: &str, file: &Path, more: &[&str]) -> Output {
    let mut args = vec![
        "catalog",
        "import",
        "--policy",
        copy.0.to_str().unwrap(),
        "--service",
        service,
        "--format",
        format,
        "--file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    vigie(&args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn listing(dir: &Path) -> Vec<Value> {
    let out = vigie(&[
        "catalog",
        "list",
        "--json",
        "--policy",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn list_shows_each_service_with_the_age_of_its_data() {
    let copy = PolicyCopy::new("list");
    let rows = listing(&copy.0);
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "google-meet",
            "goto",
            "tchap",
            "teams",
            "visio",
            "webex",
            "webinaire",
            "zoom"
        ]
    );
    let zoom = &rows[7];
    assert_eq!(zoom["retrieved"], "2024-06-01");
    assert_eq!(zoom["jurisdiction"], "US");
    assert_eq!(zoom["sovereign"], false);
    assert!(zoom["prefixes"].as_u64().unwrap() > 50, "{zoom}");
    assert!(zoom["age_days"].as_i64().unwrap() > 365, "{zoom}");
    assert_eq!(rows[4]["sovereign"], true);

    let out = vigie(&["catalog", "list", "--policy", copy.0.to_str().unwrap()]);
    let table = text(&out.stdout);
    assert!(table.starts_with("service "), "{table}");
    assert!(table.contains("zoom         US   no"), "{table}");
}

#[test]
fn a_cidr_list_replaces_the_prefixes_and_nothing_else() {
    let copy = PolicyCopy::new("cidr");
    let before = copy.entry("zoom");
    let list = copy.write(
        "Zoom.txt",
        "# Zoom's list\n3.7.35.0/25\n8.5.128.0/23\n2407:30c0::/32\n",
    );
    let out = import(
        &copy,
        "zoom",
        "cidr",
        &list,
        &["--date", "2026-11-01", "--force"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("zoom.toml: 3 prefixes (was 82: 0 added, 79 removed), retrieved 2026-11-01"),
        "{}",
        text(&out.stdout)
    );
    let after = copy.entry("zoom");
    assert!(
        after.contains(
            "prefixes = [\n    \"3.7.35.0/25\",\n    \"8.5.128.0/23\",\n    \"2407:30c0::/32\",\n]"
        ),
        "{after}"
    );
    assert!(
        after.contains("vendor = \"published prefix list Zoom.txt\"\nretrieved = 2026-11-01"),
        "{after}"
    );
    // Everything before the prefixes (comments, identity, domains) is as it was.
    let head = |t: &str| t[..t.find("prefixes = [").unwrap()].to_owned();
    assert_eq!(head(&after), head(&before));
    let zoom = listing(&copy.0)
        .into_iter()
        .find(|r| r["id"] == "zoom")
        .unwrap();
    assert_eq!(zoom["prefixes"], 3);
    assert_eq!(zoom["retrieved"], "2026-11-01");
}

#[test]
fn a_list_that_lost_more_than_half_is_refused_unless_forced() {
    let copy = PolicyCopy::new("shrink");
    let before = copy.entry("zoom");
    let list = copy.write("short.txt", "3.7.35.0/25\n");
    let refused = import(&copy, "zoom", "cidr", &list, &[]);
    assert_eq!(refused.status.code(), Some(64));
    assert!(
        text(&refused.stderr).contains("the new list has 1 prefixes where the catalog has 82"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(copy.entry("zoom"), before, "nothing written");
    let forced = import(&copy, "zoom", "cidr", &list, &["--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_ne!(copy.entry("zoom"), before);
}

#[test]
fn a_bad_line_is_named_and_nothing_is_written() {
    let copy = PolicyCopy::new("bad");
    let before = copy.entry("webex");
    let list = copy.write("webex.txt", "62.109.192.0/18\n62.109.193.0/18\n");
    let out = import(&copy, "webex", "cidr", &list, &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("webex.txt:2: `62.109.193.0/18` is not an address prefix (host bits set: the network is 62.109.192.0/18)"),
        "{err}"
    );
    assert_eq!(copy.entry("webex"), before);
}

#[test]
fn microsoft_365_endpoint_sets_are_selected_by_id() {
    let copy = PolicyCopy::new("m365");
    let json = copy.write(
        "endpoints.json",
        r#"[
          {"id": 11, "serviceArea": "Skype", "ips": ["13.107.64.0/18", "52.112.0.0/14", "52.120.0.0/14", "2603:1063::/38"]},
          {"id": 12, "serviceArea": "Skype", "ips": ["13.70.151.216/32", "2603:1027::/48", "2603:1037::/48", "2603:1047::/48", "2603:1057::/48", "2620:1ec:6::/48", "2620:1ec:40::/42"]},
          {"id": 1, "serviceArea": "Exchange", "ips": ["40.96.0.0/13"]}
        ]"#,
    );
    let out = import(
        &copy,
        "teams",
        "m365",
        &json,
        &["--ids", "11,12", "--date", "2026-11-02"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let teams = copy.entry("teams");
    assert!(teams.contains("\"13.70.151.216/32\""), "{teams}");
    assert!(
        !teams.contains("40.96.0.0/13"),
        "Exchange is not Teams: {teams}"
    );
    assert!(
        teams.contains(
            "vendor = \"Microsoft 365 endpoints endpoints.json, service area Skype, ids 11,12\""
        ),
        "{teams}"
    );
}

#[test]
fn an_entry_that_would_not_compile_is_left_alone() {
    let copy = PolicyCopy::new("invalid");
    // Break another field of the entry: the import must not write a file vigie would refuse.
    let broken = copy
        .entry("goto")
        .replace("jurisdiction = \"US\"", "jurisdiction = \"USA\"");
    copy.write("catalog/goto.toml", &broken);
    let list = copy.write(
        "goto.txt",
        "78.108.116.0/22\n78.108.120.0/23\n78.108.126.0/23\n188.66.43.0/24\n202.173.25.0/24\n",
    );
    let out = import(&copy, "goto", "cidr", &list, &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("nothing was written") && err.contains("catalog/goto.toml:"),
        "{err}"
    );
    assert_eq!(copy.entry("goto"), broken);
}

#[test]
fn an_unknown_service_names_the_file_it_looked_for() {
    let copy = PolicyCopy::new("unknown");
    let list = copy.write("x.txt", "192.0.2.0/24\n");
    let out = import(&copy, "skype", "cidr", &list, &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no catalog entry `skype`") && err.contains("catalog/skype.toml"),
        "{err}"
    );
}
