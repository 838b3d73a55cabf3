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

/// Bits per policy slot of the filter in front of the learned table (a power of two). A new
/// flow to an address no catalog prefix lists (most flows a gateway sees) would otherwise pay
/// a lookup in the learned table, a cold hash bucket: some 150 ns here. The filter answers
/// "certainly not learned" for nearly all of them with one array read; a set bit only means
/// "maybe", and the table decides. The daemon sets an address's bit before it writes the
/// address, and rebuilds the filter from what it wrote when addresses expire. 2^19 bits (64 KiB
/// a slot): at the default `dns_max_entries` (50,000), 9% of them are set.
pub const FILTER_BITS: u32 = 1 << 19;
/// 64-bit words of the filter per slot.
pub const FILTER_WORDS: u32 = FILTER_BITS / 64;

/// Where the filter holds a remote address of `family` (4 or 6, the address as a flow key
/// holds it) in `slot`: the word's index over both slots, and the bit within the word.
#[allow(
    clippy::inline_always,
    reason = "the kernel's learned lookup needs it inlined"
)]
#[inline(always)]
#[must_use]
pub fn filter_position(slot: u32, family: u8, addr: &[u8; 16]) -> (u32, u64) {
    let half = |at: usize| {
        u64::from_le_bytes([
            addr[at],
            addr[at + 1],
            addr[at + 2],
            addr[at + 3],
            addr[at + 4],
            addr[at + 5],
            addr[at + 6],
            addr[at + 7],
        ])
    };
    let mixed = half(0).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ half(8).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ u64::from(family).wrapping_mul(0x1656_67b1_9e37_79f9);
    let bit = ((mixed ^ (mixed >> 29) ^ (mixed >> 47)) as u32) & (FILTER_BITS - 1);
    ((slot & 1) * FILTER_WORDS + bit / 64, 1 << (bit % 64))
}
