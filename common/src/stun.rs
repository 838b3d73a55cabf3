//! Vendor STUN attributes: the kernel reads the first datagrams of a UDP flow that no address
//! explains as STUN messages (RFC 8489) and looks their attribute types up in a table the
//! daemon writes from the catalog's `stun_attributes`.

/// Key of the STUN attribute table: the policy slot and an attribute type.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct StunKey {
    pub slot: u32,
    pub attribute: u32,
}

/// What `vigie_stun_service` returns for a datagram that is not a STUN message.
pub const NOT_STUN: u64 = u64::MAX;
/// STUN messages of a flow read before vigie stops looking.
pub const STUN_DATAGRAMS: u32 = 4;
/// Attributes walked per STUN message.
pub const MAX_STUN_ATTRIBUTES: u32 = 24;
