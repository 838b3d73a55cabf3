//! `vigie check` refuses a policy that the kernel's maps cannot hold, as the daemon would at
//! start or at a reload, with the file, line and column that make it overflow; the map writer
//! checks the same needs again.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use vigie::{maps, policy};

const VIGIE: &str = env!("CARGO_BIN_EXE_vigie");

const SETTINGS: &str =
    "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\n";

/// A catalog entry whose UDP `ranges` are signals (the `signal = true` of the n-th, from 0, on line 12 + 4n).
fn service(id: &str, ranges: &[&str]) -> String {
    let mut text = format!(
        "id = \"{id}\"\nname = \"{id}\"\noperator = \"op\"\njurisdiction = \"US\"\ncategory = \"conferencing\"\n\
         [source]\nvendor = \"test\"\nretrieved = 2026-11-01\n"
    );
    for range in ranges {
        let _ = write!(
            text,
            "[[ports]]\nproto = \"udp\"\nrange = \"{range}\"\nsignal = true\n"
        );
    }
    text
}

/// 1,000 signal ports for alpha and beta each, and gamma's `ranges`.
fn files(gamma: &[&str]) -> Vec<(PathBuf, String)> {
    vec![
        (
            "catalog/alpha.toml".into(),
            service("alpha", &["10000-10999"]),
        ),
        (
            "catalog/beta.toml".into(),
            service("beta", &["20000-20999"]),
        ),
        ("catalog/gamma.toml".into(), service("gamma", gamma)),
        ("policy.toml".into(), SETTINGS.to_owned()),
    ]
}

struct PolicyDir(PathBuf);

impl PolicyDir {
    fn new(name: &str, files: &[(PathBuf, String)]) -> Self {
        let dir = std::env::temp_dir().join(format!("vigie-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("catalog")).unwrap();
        for (path, text) in files {
            fs::write(dir.join(path), text).unwrap();
        }
        Self(dir)
    }
}

impl Drop for PolicyDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn check(dir: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(VIGIE)
        .args(["check", "--policy", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn check_refuses_signal_ports_past_the_kernel_table_at_the_entry_that_overflows_it() {
    // 2,040 ports, then 3,040: the table holds 2,048 per policy slot.
    let dir = PolicyDir::new("check-capacity", &files(&["30000-30039", "31000-31999"]));
    let (code, stdout, stderr) = check(&dir.0);
    assert_eq!(code, Some(64), "{stdout}{stderr}");
    assert_eq!(
        stderr,
        format!(
            "{}:16:10: too many vendor signal ports: the policy needs 3040, the kernel holds 2048 \
             per policy slot; the catalog's entries, in service id order, go past it here\n",
            dir.0.join("catalog/gamma.toml").display()
        )
    );
    // Without the entry, it fits.
    let dir = PolicyDir::new("check-capacity-fits", &files(&["30000-30039"]));
    let (code, stdout, stderr) = check(&dir.0);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(": valid: "), "{stdout}");
}

#[test]
fn the_map_writer_checks_the_same_needs() {
    let mut compiled = policy::load_from_files(&files(&["30000-30047"]))
        .unwrap_or_else(|e| panic!("{e}"))
        .policy;
    assert_eq!(compiled.port_signals.len(), 2048);
    assert!(maps::check_capacity(&compiled).is_ok());
    compiled.port_signals.push(((17, 40_000), 3));
    assert_eq!(
        maps::check_capacity(&compiled).unwrap_err().to_string(),
        "the policy needs 2049 vendor signal ports, the kernel map holds 2048"
    );
}
