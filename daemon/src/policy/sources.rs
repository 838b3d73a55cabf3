//! The files of a policy directory: read from disk or built into the binary, named relative to
//! the directory, and hashed into the policy's digest.

use std::{
    fs, io,
    path::{Component, Path, PathBuf},
};

use include_dir::{Dir, include_dir};
use sha2::{Digest as _, Sha256};

use super::{
    diagnostic::{Place, Report},
    problem::Problem,
};

/// The root that diagnostics of the built-in policy name.
pub(super) const EMBEDDED_ROOT: &str = "<embedded>";

// Only policy.toml and catalog/ are built in: policies/ also holds the examples and the GeoIP
// database (megabytes), which the binary must not carry.
const EMBEDDED_POLICY: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policies/policy.toml"
));
static EMBEDDED_CATALOG: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../policies/catalog");

/// What a file is to the compiler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Policy,
    Catalog,
}

/// The file's role and its name with `/` separators, if it is part of a policy directory.
pub(super) fn role(name: &Path) -> Option<(Role, String)> {
    let parts: Vec<&str> = name
        .components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        ["policy.toml"] => Some((Role::Policy, "policy.toml".to_owned())),
        ["catalog", file] if is_toml(file) => Some((Role::Catalog, format!("catalog/{file}"))),
        _ => None,
    }
}

/// The built-in default policy directory.
pub(super) fn embedded() -> Vec<(PathBuf, String)> {
    let catalog = EMBEDDED_CATALOG
        .files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "toml"));
    let catalog = catalog.map(|f| {
        (
            Path::new("catalog").join(f.path()),
            String::from_utf8_lossy(f.contents()).into_owned(),
        )
    });
    std::iter::once((PathBuf::from("policy.toml"), EMBEDDED_POLICY.to_owned()))
        .chain(catalog)
        .collect()
}

/// `policy.toml` and `catalog/*.toml` of `dir`, with relative names. A missing policy.toml is
/// left for the compiler to report; other problems are reported here.
pub(super) fn read_dir(dir: &Path, report: &mut Report) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    match fs::read_to_string(dir.join("policy.toml")) {
        Ok(text) => files.push((PathBuf::from("policy.toml"), text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => report.error(
            &Place::file(&dir.join("policy.toml")),
            Problem::Unreadable(e.to_string()),
        ),
    }
    let catalog = dir.join("catalog");
    match catalog_names(&catalog) {
        Ok(names) => files.extend(
            names
                .into_iter()
                .filter_map(|name| read_catalog_file(&catalog, &name, report)),
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            report.error(&Place::file(&catalog), Problem::MissingCatalog);
        }
        Err(e) => report.error(&Place::file(&catalog), Problem::Unreadable(e.to_string())),
    }
    files
}

/// Names of the `*.toml` files of the catalog directory, sorted.
/// A catalog file is `NAME.toml`, spelled as the shipped ones are: the service id comes from
/// the name, and one spelling per service keeps ids unambiguous.
fn is_toml(file: &str) -> bool {
    file.strip_suffix(".toml")
        .is_some_and(|stem| !stem.is_empty())
}

fn catalog_names(catalog: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(catalog)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
        match name {
            Some(name) if is_toml(&name) && path.is_file() => names.push(name),
            _ => {}
        }
    }
    names.sort();
    Ok(names)
}

fn read_catalog_file(catalog: &Path, name: &str, report: &mut Report) -> Option<(PathBuf, String)> {
    let path = catalog.join(name);
    match fs::read_to_string(&path) {
        Ok(text) => Some((Path::new("catalog").join(name), text)),
        Err(e) => {
            report.error(&Place::file(&path), Problem::Unreadable(e.to_string()));
            None
        }
    }
}

/// Hex SHA-256 over the files in the order given (sorted by name), each as its name and its
/// contents with their lengths in front, so that no two directories hash alike.
pub(super) fn digest<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut hasher = Sha256::new();
    for (name, text) in files {
        for part in [name, text] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
    }
    hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_of_names() {
        assert_eq!(
            role(Path::new("policy.toml")),
            Some((Role::Policy, "policy.toml".into()))
        );
        assert_eq!(
            role(Path::new("./catalog/zoom.toml")),
            Some((Role::Catalog, "catalog/zoom.toml".into()))
        );
        assert_eq!(role(Path::new("catalog/README.md")), None);
        assert_eq!(role(Path::new("catalog/.toml")), None);
        assert_eq!(role(Path::new("../policy.toml")), None);
        assert_eq!(role(Path::new("examples/x/policy.toml")), None);
    }

    #[test]
    fn the_digest_separates_names_from_contents() {
        let a = digest([("ab", "c")]);
        assert_eq!(a.len(), 64);
        assert_ne!(a, digest([("a", "bc")]));
        assert_eq!(a, digest([("ab", "c")]));
    }

    #[test]
    fn the_embedded_policy_leaves_out_examples_and_geoip() {
        let files = embedded();
        assert!(
            files
                .iter()
                .any(|(name, _)| name == Path::new("policy.toml"))
        );
        assert!(
            files
                .iter()
                .any(|(name, _)| name == Path::new("catalog/zoom.toml"))
        );
        assert!(
            files.iter().all(|(name, _)| role(name).is_some()),
            "{files:?}"
        );
    }
}
