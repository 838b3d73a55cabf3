//! vigie's daemon as a library: the `vigie` binary, the lab and the tests all use it.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod catalog_cli;
pub mod cli;
pub mod compiled;
pub mod dst_v4;
pub mod events;
pub mod explain;
pub mod geoip;
pub mod hello;
pub mod learning;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod numbering;
pub mod pins;
pub mod policy;
pub mod probe;
pub mod replay;
pub mod resolvers;
pub mod run;
pub mod sandbox;
pub mod sorted;
pub mod source;
pub mod status;
pub mod watch;
