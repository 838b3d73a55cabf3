//! vigie's lab: network namespaces joined by veth, real peers, crafted packets. Used by the
//! demo (`vigie-lab`), the privileged tests and the benchmarks. Nothing here ever touches the
//! machine's own interfaces: every address lives inside namespaces the lab creates.

pub mod packet;
pub mod privilege;

pub mod bins;
pub mod bpffs;
pub mod census;
pub mod daemon;
pub mod dashboards;
pub mod fixtures;
pub mod netns;
pub mod peer;
pub mod process;
pub mod prometheus;
pub mod report;
pub mod scenario;
pub mod tempdir;
pub mod topology;
