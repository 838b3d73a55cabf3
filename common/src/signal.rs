//! Vendor media ports: a port that a catalog entry marks as its own signal (Zoom's UDP
//! 8801-8810, say) tells the service of a flow that nothing stronger explained. The weakest
//! evidence: an address, DNS, a server name or a STUN attribute replaces it, and it never
//! overrides a rule that explicitly allowed the flow.

/// Key of the port-signal table: the policy slot, the IP protocol and the remote port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PortKey {
    pub slot: u8,
    pub proto: u8,
    pub port: u16,
}
