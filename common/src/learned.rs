//! Endpoints learned from DNS: addresses that a DNS response gave for a name under a catalog
//! domain. The daemon reads the responses (see `payload`) and writes this table, per policy
//! slot like every other table, so that a swap never mixes the learned services of two
//! policies; the kernel consults it when the address table knows nothing of the remote side.

/// Key of the learned table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct LearnedKey {
    pub slot: u8,
    /// 4 or 6.
    pub family: u8,
    pub pad: [u8; 2],
    /// IPv4 addresses in the first 4 bytes, the rest zero (as in `FlowKey`).
    pub addr: [u8; 16],
}

/// What the kernel needs of a learned endpoint (its country classes come from the address
/// table, as for any address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct LearnedEndpoint {
    pub service: u32,
    pub pad: u32,
    /// `bpf_ktime_get_ns` time after which the entry no longer counts (the daemon removes it
    /// soon after; the kernel does not wait for that).
    pub expires_ns: u64,
}
