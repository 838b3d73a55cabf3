//! Policy directories written in the tests: a catalog entry of a fixed layout, and the settings
//! every test policy starts with (they take its lines 1-4).

use std::path::PathBuf;

/// A catalog entry (US, conferencing); `extra` goes after the required keys.
pub fn service(id: &str, extra: &str) -> (PathBuf, String) {
    let text = format!(
        "id = \"{id}\"\nname = \"{id}\"\noperator = \"op\"\njurisdiction = \"US\"\ncategory = \"conferencing\"\n\
         {extra}\n[source]\nvendor = \"test\"\nretrieved = 2024-06-01\n"
    );
    (PathBuf::from(format!("catalog/{id}.toml")), text)
}

pub const SETTINGS: &str =
    "[settings]\nmode = \"enforce\"\ndefault = \"allow\"\nunparsed = \"allow\"\n";
