//! What a rule says to do with a flow, and how the kernel recognised the flow's service.

/// No action recorded (never the result of a decision).
pub const NONE: u32 = 0;
/// Let the flow through.
pub const ALLOW: u32 = 1;
/// Block by dropping silently.
pub const DROP: u32 = 2;
/// Block by answering (TCP reset, ICMP unreachable) where the hook can; drop otherwise.
pub const REJECT: u32 = 3;
/// Let the flow through and report it.
pub const MONITOR: u32 = 4;

/// Whether an action stops the packet (before the enforce/monitor mode is applied).
#[must_use]
pub const fn blocks(action: u32) -> bool {
    action == DROP || action == REJECT
}

/// A rule's own mode, which overrides the policy's, in the bits of `Rule::action` above the
/// action itself. The default action has none: it follows the policy's mode.
pub mod rule_mode {
    /// The bits that hold the action.
    pub const ACTION_MASK: u32 = 0x3f;
    /// This rule only reports, even in an enforcing policy (a rollout, rule by rule).
    pub const MONITOR: u32 = 1 << 6;
    /// This rule enforces, even in a monitoring policy (a block decided before the rest).
    pub const ENFORCE: u32 = 1 << 7;

    /// Whether a decision with `action` (as the rule walk returns it) is only reported, under
    /// a policy whose mode is `policy_mode`.
    #[must_use]
    pub const fn monitors(action: u32, policy_mode: u32) -> bool {
        if action & MONITOR != 0 {
            true
        } else if action & ENFORCE != 0 {
            false
        } else {
            policy_mode == super::mode::MONITOR
        }
    }
}

/// Global policy modes.
pub mod mode {
    /// Actions are carried out.
    pub const ENFORCE: u32 = 0;
    /// Blocking actions are only reported: the packet passes.
    pub const MONITOR: u32 = 1;
}

/// How the service of a flow was recognised. The daemon prints these names.
pub mod evidence {
    pub const NONE: u32 = 0;
    pub const ADDRESS: u32 = 1;
    pub const ASN: u32 = 2;
    pub const DNS: u32 = 3;
    pub const SNI: u32 = 4;
    pub const QUIC_SNI: u32 = 5;
    pub const STUN: u32 = 6;
    pub const SIGNATURE: u32 = 7;
    pub const PORT: u32 = 8;

    /// Evidence that came from the flow's own packets (a server name, a STUN attribute, a
    /// signature): it survives a policy swap. What tables tell (addresses, DNS, signal ports)
    /// is looked up again in the new policy's tables.
    #[must_use]
    pub const fn is_learned(evidence: u32) -> bool {
        matches!(evidence, SNI | QUIC_SNI | STUN | SIGNATURE)
    }
}

/// Rule numbers that are not indices into the rule table.
pub mod rule {
    /// The policy's default action decided (no rule matched).
    pub const DEFAULT: u32 = 0xffff;
    /// No policy has been applied yet: the program's failure behaviour decided.
    pub const NO_POLICY: u32 = 0xfffe;
}
