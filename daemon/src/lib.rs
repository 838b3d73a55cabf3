//! vigie's daemon as a library: the `vigie` binary, the lab and the tests all use it.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod cli;
pub mod compiled;
pub mod events;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod pins;
pub mod policy;
pub mod run;
pub mod sandbox;
pub mod source;
pub mod status;
