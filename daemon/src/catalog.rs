//! Service catalog: one TOML file per service.
