//! Where the policy comes from: an explicit directory, /etc/vigie, or the embedded default.

use std::path::{Path, PathBuf};

use crate::policy::{self, Compilation, PolicyErrors};

const SYSTEM_POLICY_DIR: &str = "/etc/vigie";

#[derive(Clone, Debug)]
pub enum PolicySource {
    Dir(PathBuf),
    Embedded,
}

impl PolicySource {
    #[must_use]
    pub fn resolve(explicit: Option<&Path>) -> Self {
        match explicit {
            Some(dir) => Self::Dir(dir.to_owned()),
            None if Path::new(SYSTEM_POLICY_DIR).join("policy.toml").exists() => {
                Self::Dir(PathBuf::from(SYSTEM_POLICY_DIR))
            }
            None => Self::Embedded,
        }
    }

    pub fn compile(&self) -> Result<Compilation, PolicyErrors> {
        match self {
            Self::Dir(dir) => policy::load_dir(dir),
            Self::Embedded => policy::load_embedded(),
        }
    }

    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Dir(dir) => dir.display().to_string(),
            Self::Embedded => "<embedded default>".to_owned(),
        }
    }
}
