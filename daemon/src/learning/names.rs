//! Host names to services, as the kernel matches TLS server names: the longest catalog domain
//! that the name equals or ends with ("." + domain), through the same hashes the compiled
//! policy carries (`CompiledPolicy::domains`), so that userspace and kernel never disagree.

use vigie_common::sni::domain_hash;

use crate::compiled::CompiledPolicy;

/// The kernel service id of `name` under `policy`, if a catalog domain holds it.
#[must_use]
pub fn service_of(policy: &CompiledPolicy, name: &str) -> Option<u32> {
    let name = name.trim_end_matches('.').as_bytes();
    if name.is_empty() {
        return None;
    }
    // Suffixes that start a label, the longest (the whole name) first.
    let starts = std::iter::once(0).chain(
        name.iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'.')
            .map(|(i, _)| i + 1),
    );
    for start in starts {
        let suffix = &name[start..];
        if suffix.is_empty() {
            continue;
        }
        let hash = domain_hash(suffix);
        if let Ok(at) = policy.domains.binary_search_by_key(&hash, |&(h, _)| h) {
            return Some(policy.domains[at].1);
        }
    }
    None
}
