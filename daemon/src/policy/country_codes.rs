//! The country codes a policy or catalog may write: ISO 3166-1 alpha-2.
//!
//! Two capital letters are not enough: `UK` and `EL` look like codes (and are what the United
//! Kingdom and Greece are called in some lists, the EU's among them), but no GeoIP database
//! tags a network with them, so a rule about them would silently match nothing.

/// The officially assigned ISO 3166-1 alpha-2 codes (249, as of 2024), and `XK`: a
/// user-assigned code that Kosovo has by common use (the European Commission's, the regional
/// registries', the GeoIP database vigie ships), which the standard does not assign. Sorted,
/// for a binary search.
const ASSIGNED: [&str; 250] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "XK", "YE", "YT", "ZA", "ZM", "ZW",
];

/// Whether `code` is a country code a GeoIP database or an operator's registry may give.
pub(crate) fn is_assigned(code: &str) -> bool {
    ASSIGNED.binary_search(&code).is_ok()
}

/// What to write instead of a code that looks like one but is not, when the mistake is a
/// common one.
pub(crate) fn hint(code: &str) -> Option<&'static str> {
    match code {
        "UK" => Some("the United Kingdom's code is GB"),
        "EL" => Some("Greece's code is GR (EL is the European Union's abbreviation)"),
        "EU" => Some("for the member states of the European Union, write the set `eu`"),
        "AN" => Some("the Netherlands Antilles' code was withdrawn in 2010: BQ, CW or SX"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_complete() {
        assert!(ASSIGNED.windows(2).all(|w| w[0] < w[1]));
        assert!(
            ASSIGNED
                .iter()
                .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
        for code in ["FR", "GB", "GR", "US", "CN", "AD", "ZW", "XK", "BQ", "SS"] {
            assert!(is_assigned(code), "{code}");
        }
        for code in ["UK", "EL", "EU", "AN", "ZZ", "AA", "fr", "F", "FRA"] {
            assert!(!is_assigned(code), "{code}");
        }
    }
}
