//! Every error and warning that a policy directory can get, in the words an operator reads.

use super::diagnostic::Place;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Problem {
    // Files.
    #[error("cannot read: {0}")]
    Unreadable(String),
    #[error("missing policy.toml")]
    MissingPolicyFile,
    #[error("missing catalog directory: each service is described in catalog/<id>.toml")]
    MissingCatalog,
    #[error("{0} is given twice")]
    DuplicateFile(String),
    #[error("not part of a policy directory (policy.toml, catalog/*.toml): ignored")]
    IgnoredFile,
    #[error("unknown key `{0}`, expected one of `settings`, `country_sets`, `groups`, `rule`")]
    UnknownSection(String),
    #[error("missing [settings]: mode, default and unparsed are required")]
    MissingSettings,
    #[error("`{key}` must be {expected}")]
    NotA {
        key: &'static str,
        expected: &'static str,
    },
    /// The TOML parser's message: syntax, unknown key, missing key, wrong type.
    #[error("{0}")]
    Toml(String),

    // Values.
    #[error("{what} `{value}` may only use a-z, 0-9 and '-'")]
    BadIdentifier { what: &'static str, value: String },
    #[error("{what} `none` is reserved: it names the absence of a {what}")]
    ReservedName { what: &'static str },
    #[error("{what} must not be empty")]
    EmptyText { what: &'static str },
    #[error("category `{0}` may only use a-z and '-'")]
    BadCategory(String),
    #[error(
        "jurisdiction `{0}` is not an ISO 3166-1 alpha-2 code (two capital letters, like \"US\")"
    )]
    BadJurisdiction(String),
    #[error(
        "jurisdiction `{0}` is not an ISO 3166-1 alpha-2 code (like \"US\"), a built-in set (eu, eea), a set of [country_sets], nor `non-` and a set"
    )]
    BadJurisdictionSet(String),
    #[error("`{code}` is not an assigned ISO 3166-1 alpha-2 country code: {hint}")]
    UnassignedCountry { code: String, hint: &'static str },
    #[error("domain suffix `{value}`: {reason}")]
    BadDomain { value: String, reason: &'static str },
    #[error("retrieved must be a date like 2024-06-01, without a time")]
    BadDate,
    #[error("`{0}` is not an IPv4 or IPv6 prefix (like 192.0.2.0/24 or 2001:db8::/32)")]
    BadPrefix(String),
    #[error("prefix `{value}` has host bits set: did you mean `{network}`?")]
    HostBits { value: String, network: String },
    #[error(
        "prefix `{value}` is IPv4-mapped IPv6, which no packet is matched against (IPv4 packets are \
         looked up as IPv4): write `{ipv4}`"
    )]
    MappedPrefix { value: String, ipv4: String },
    #[error("protocol `{value}` must be one of {allowed}")]
    BadProto {
        value: String,
        allowed: &'static str,
    },
    #[error("`{0}` is not a port (0-65535) nor a range like \"8801-8810\"")]
    BadPort(String),
    #[error("port range {min}-{max} is reversed: write {max}-{min}")]
    ReversedPorts { min: u16, max: u16 },
    #[error("ports need proto = \"tcp\" or \"udp\"")]
    PortsWithoutProto,
    #[error("action `{value}` must be one of {allowed}")]
    BadAction {
        value: String,
        allowed: &'static str,
    },
    #[error("mode `{0}` must be \"enforce\" or \"monitor\"")]
    BadMode(String),
    #[error("`signal` needs TCP or UDP ports")]
    SignalWithoutPorts,
    #[error("port {0} cannot be a signal: many services use it, the sovereign ones too")]
    SharedSignalPort(u16),
    #[error("a signal range holds {ports} ports; at most {max} (each is a kernel entry)")]
    SignalRangeTooLarge { ports: u32, max: u32 },
    #[error(
        "{proto} {ports} cannot be a signal: sovereign service `{service}` uses {proto} {service_ports} \
         ({place}), and its flows would be taken for this service"
    )]
    SovereignSignal {
        proto: &'static str,
        ports: String,
        service: String,
        service_ports: String,
        place: Place,
    },
    #[error("dns_min_ttl ({min} s) is above dns_max_ttl ({max} s)")]
    DnsTtlOrder { min: u32, max: u32 },
    #[error("dns_max_ttl must be at least 1 s")]
    DnsTtlZero,
    #[error(
        "dns_max_entries must be 1 to {capacity} (the kernel's learned table holds this many per policy slot)"
    )]
    DnsEntries { capacity: u32 },

    // Catalog.
    #[error("service id `{id}` must equal the file name `{stem}` (without .toml)")]
    IdMismatch { id: String, stem: String },
    #[error("service `{id}` is already defined at {first}")]
    DuplicateService { id: String, first: Place },

    #[error(
        "domain `{domain}` is {relation} sovereign service `{service}` ({place}): `{claimant}` would \
         take its server names, and a policy that blocks `{claimant}` would block `{service}`"
    )]
    SovereignDomain {
        domain: String,
        /// "a domain of", or "under `x`, a domain of".
        relation: String,
        service: String,
        place: Place,
        claimant: String,
    },
    #[error(
        "STUN attribute {attribute} is also listed by sovereign service `{service}` ({place}): the \
         STUN table keeps `{claimant}`, first in id order, and a policy that blocks `{claimant}` \
         would block `{service}`"
    )]
    SovereignStun {
        attribute: String,
        service: String,
        place: Place,
        claimant: String,
    },

    // Policy.
    #[error("unknown service `{0}`: no catalog/{0}.toml")]
    UnknownService(String),
    #[error("unknown category `{0}`: no service of the catalog has it")]
    UnknownCategory(String),
    #[error("unknown group `{0}`: define it under [groups.{0}]")]
    UnknownGroup(String),
    #[error("rule name `{name}` is already used at {first}")]
    DuplicateRule { name: String, first: Place },
    #[error("prefix {prefix} already belongs to group `{group}` ({first})")]
    DuplicateGroupPrefix {
        prefix: String,
        group: String,
        first: Place,
    },
    #[error("too many {what}: the kernel holds at most {limit}")]
    TooMany { what: &'static str, limit: u32 },
    #[error(
        "too many {what}: the policy needs {needed}, the kernel holds {capacity} per policy slot; \
         {cause}"
    )]
    Overflow {
        what: &'static str,
        needed: usize,
        capacity: u32,
        cause: &'static str,
    },
    #[error("`{0}` is empty: remove the key to leave it unconstrained")]
    EmptyList(&'static str),
    #[error(
        "unknown = true matches flows whose service was not recognised: it cannot be combined with services, categories or jurisdictions"
    )]
    UnknownWithServices,
    #[error(
        "unknown = false means nothing: only unknown = true (flows whose service was not recognised) \
         does; remove the key to match any destination"
    )]
    UnknownFalse,

    #[error("`{0}` is a built-in country set (eu, eea) or starts with `non-`: choose another name")]
    ReservedCountrySet(String),
    #[error(
        "country set `{0}` is empty: a rule would match no country with it, and every country with \
         `non-{0}`; list its countries or remove it"
    )]
    EmptyCountrySet(String),
    #[error("`{0}` is neither a country code (two capital letters) nor a built-in set (eu, eea)")]
    BadCountrySetMember(String),
    #[error(
        "`{0}` is neither a country code (two capital letters), a built-in set (eu, eea), a set of [country_sets], nor `non-` and a set"
    )]
    UnknownCountrySet(String),
    #[error("{0}")]
    GeoIp(String),

    // Warnings.
    #[error(
        "unparsed = \"block\" has no effect in monitor mode: unparsable packets pass and are counted by reason until the mode is enforce"
    )]
    UnparsedMonitored,
    #[error(
        "prefix {prefix} is also listed by service `{first}` ({first_place}): the address table keeps `{first}`"
    )]
    SharedPrefix {
        prefix: String,
        first: String,
        first_place: Place,
    },
    #[error(
        "domain `{domain}` is also listed by service `{first}` ({first_place}): the name table keeps \
         `{first}`"
    )]
    SharedDomain {
        domain: String,
        first: String,
        first_place: Place,
    },
    #[error(
        "STUN attribute {attribute} is also listed by service `{first}` ({first_place}): the STUN \
         table keeps `{first}`"
    )]
    SharedStun {
        attribute: String,
        first: String,
        first_place: Place,
    },
    #[error(
        "{proto} {ports} is also a signal of service `{first}` ({first_place}): the signal table \
         keeps `{first}`"
    )]
    SharedSignal {
        proto: &'static str,
        ports: String,
        first: String,
        first_place: Place,
    },
    #[error("{what} {value} is listed twice")]
    ListedTwice { what: &'static str, value: String },
    #[error("group `{0}` has no prefixes: no source is ever in it")]
    EmptyGroup(String),
    #[error("rule `{rule}` never decides: every flow it matches is decided first by {by}")]
    Shadowed { rule: String, by: String },
    #[error("rule `{rule}` selects no service of the catalog: it never matches")]
    SelectsNothing { rule: String },
    #[error("no service of the catalog has jurisdiction {0}")]
    UnusedJurisdiction(String),
    #[error(
        "rule `{rule}` blocks {proto} {ports} by port alone, which also hits sovereign service `{service}` \
         ({proto} {service_ports}): name the services to block instead"
    )]
    SovereignPort {
        rule: String,
        proto: &'static str,
        ports: String,
        service: String,
        service_ports: String,
    },
    #[error(
        "group `{0}` is also in `groups`: the exception wins, so the rule never matches its sources"
    )]
    GroupExcepted(String),
    #[error(
        "rule `{rule}` blocks sovereign service `{service}` ({flows}) without naming it: only a rule \
         that names `{service}` in `services` should block it; to keep it, allow it by name in an \
         earlier rule"
    )]
    SovereignBlocked {
        rule: String,
        service: String,
        flows: String,
    },
    #[error(
        "the default action blocks sovereign service `{service}` ({flows}), which no rule decides: \
         name `{service}` in the `services` of a rule to decide for it (allow to keep it)"
    )]
    SovereignDefault { service: String, flows: String },
}
