//! The web configuration file of Prometheus exporters (`--web-config`): optional TLS and
//! basic authentication with bcrypt hashes, in the same YAML shape as the exporter toolkit's,
//! so that operators reuse what they already write for `node_exporter`.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/vigie/metrics.crt
//!   key_file: /etc/vigie/metrics.key
//! basic_auth_users:
//!   prometheus: $2y$10$...
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use base64::Engine as _;
use serde::Deserialize;
use tokio_rustls::rustls::{self, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Syntax(PathBuf, serde_yaml::Error),
    #[error("{0}: no certificate found")]
    NoCertificate(PathBuf),
    #[error("{0}: no private key found")]
    NoKey(PathBuf),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFiles>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct TlsFiles {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// A loaded web configuration; the default serves plain HTTP without authentication.
#[derive(Clone, Default)]
pub struct WebConfig {
    pub tls: Option<Arc<ServerConfig>>,
    /// User name to bcrypt hash.
    users: BTreeMap<String, String>,
}

impl WebConfig {
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| WebConfigError::Read(path.into(), e))?;
        let file: File =
            serde_yaml::from_str(&text).map_err(|e| WebConfigError::Syntax(path.into(), e))?;
        let tls = file
            .tls_server_config
            .map(|t| tls_config(&t).map(Arc::new))
            .transpose()?;
        Ok(Self {
            tls,
            users: file.basic_auth_users,
        })
    }

    /// Whether an `Authorization` header value lets the request through.
    #[must_use]
    pub fn authorised(&self, header: Option<&[u8]>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some(credentials) = header
            .and_then(|h| h.strip_prefix(b"Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return false;
        };
        let Some((user, password)) = credentials.split_once(':') else {
            return false;
        };
        self.users
            .get(user)
            .is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false))
    }
}

fn tls_config(files: &TlsFiles) -> Result<ServerConfig, WebConfigError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| WebConfigError::Read(p.into(), e));
    let certs = rustls_pemfile::certs(&mut read(&files.cert_file)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WebConfigError::Read(files.cert_file.clone(), e))?;
    if certs.is_empty() {
        return Err(WebConfigError::NoCertificate(files.cert_file.clone()));
    }
    let key = rustls_pemfile::private_key(&mut read(&files.key_file)?.as_slice())
        .map_err(|e| WebConfigError::Read(files.key_file.clone(), e))?
        .ok_or_else(|| WebConfigError::NoKey(files.key_file.clone()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(users: &[(&str, &str)]) -> WebConfig {
        WebConfig {
            tls: None,
            users: users
                .iter()
                .map(|(u, p)| ((*u).to_owned(), bcrypt::hash(p, 4).unwrap()))
                .collect(),
        }
    }

    fn basic(user_password: &str) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
        format!("Basic {encoded}").into_bytes()
    }

    #[test]
    fn no_users_means_no_authentication() {
        assert!(WebConfig::default().authorised(None));
    }

    #[test]
    fn basic_auth_checks_the_bcrypt_hash() {
        let c = config(&[("prometheus", "s3cret")]);
        assert!(c.authorised(Some(&basic("prometheus:s3cret"))));
        assert!(!c.authorised(Some(&basic("prometheus:wrong"))));
        assert!(!c.authorised(Some(&basic("other:s3cret"))));
        assert!(!c.authorised(None));
        assert!(!c.authorised(Some(b"Bearer x")));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("vigie-webcfg-{}", std::process::id()));
        std::fs::write(&dir, "basic_auth_user: {}\n").unwrap();
        let e = WebConfig::load(&dir).err().unwrap().to_string();
        std::fs::remove_file(&dir).unwrap();
        assert!(e.contains("unknown field"), "{e}");
    }
}
