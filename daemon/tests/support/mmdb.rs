//! A small writer of MaxMind DB files (format 2.0), for tests that need a database of a given
//! layout: GeoIP2's `country.iso_code`, GeoLite2-ASN's `autonomous_system_number`. IPv4 trees
//! only, record size 32, disjoint prefixes.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

/// A value of the data section.
#[derive(Clone, Debug)]
pub enum Value {
    Str(String),
    U32(u32),
    Map(BTreeMap<String, Value>),
}

impl Value {
    pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Self {
        Self::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    pub fn str(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
}

#[derive(Clone, Copy)]
enum Record {
    Empty,
    Node(u32),
    Data(u32),
}

/// The database file for `entries` (IPv4 prefixes and their records).
pub fn write(database_type: &str, entries: &[(Ipv4Net, Value)]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
    for (net, value) in entries {
        let offset = data.len() as u32;
        encode(value, &mut data);
        let bits = u32::from(net.network());
        let mut node = 0usize;
        for depth in 0..net.prefix_len() {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == net.prefix_len() {
                nodes[node][bit] = Record::Data(offset);
            } else {
                node = if let Record::Node(next) = nodes[node][bit] {
                    next as usize
                } else {
                    nodes.push([Record::Empty; 2]);
                    let next = nodes.len() - 1;
                    nodes[node][bit] = Record::Node(next as u32);
                    next
                };
            }
        }
    }
    let count = nodes.len() as u32;
    let mut out = Vec::new();
    for node in &nodes {
        for record in node {
            let value = match *record {
                Record::Empty => count,
                Record::Node(n) => n,
                Record::Data(offset) => count + 16 + offset,
            };
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let metadata = Value::map([
        ("node_count", Value::U32(count)),
        ("record_size", Value::U32(32)),
        ("ip_version", Value::U32(4)),
        ("database_type", Value::str(database_type)),
        ("binary_format_major_version", Value::U32(2)),
        ("binary_format_minor_version", Value::U32(0)),
        ("build_epoch", Value::U32(1_700_000_000)),
        ("languages", Value::Map(BTreeMap::new())),
        ("description", Value::Map(BTreeMap::new())),
    ]);
    encode_metadata(&metadata, &mut out);
    out
}

/// Metadata wants exact types for some keys (uint16 sizes, an array of languages, uint64 epoch).
fn encode_metadata(value: &Value, out: &mut Vec<u8>) {
    let Value::Map(map) = value else {
        unreachable!()
    };
    control(7, map.len(), out);
    for (key, value) in map {
        encode(&Value::Str(key.clone()), out);
        match (key.as_str(), value) {
            (
                "record_size"
                | "ip_version"
                | "binary_format_major_version"
                | "binary_format_minor_version",
                Value::U32(n),
            ) => {
                let n = *n as u16;
                control(5, 2, out);
                out.extend_from_slice(&n.to_be_bytes());
            }
            ("build_epoch", Value::U32(n)) => {
                extended(9, 8, out);
                out.extend_from_slice(&u64::from(*n).to_be_bytes());
            }
            ("languages", _) => extended(11, 0, out),
            _ => encode(value, out),
        }
    }
}

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Str(s) => {
            control(2, s.len(), out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::U32(n) => {
            control(6, 4, out);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Map(map) => {
            control(7, map.len(), out);
            for (key, value) in map {
                encode(&Value::Str(key.clone()), out);
                encode(value, out);
            }
        }
    }
}

/// A control byte of a basic type (1 to 7) and its size.
fn control(kind: u8, size: usize, out: &mut Vec<u8>) {
    let (first, rest) = size_bytes(size);
    out.push((kind << 5) | first);
    out.extend_from_slice(&rest);
}

/// A control byte of an extended type (8 and above) and its size.
fn extended(kind: u8, size: usize, out: &mut Vec<u8>) {
    let (first, rest) = size_bytes(size);
    out.push(first);
    out.push(kind - 7);
    out.extend_from_slice(&rest);
}

fn size_bytes(size: usize) -> (u8, Vec<u8>) {
    match size {
        0..29 => (size as u8, Vec::new()),
        29..285 => (29, vec![(size - 29) as u8]),
        _ => {
            let rest = (size - 285) as u16;
            (30, rest.to_be_bytes().to_vec())
        }
    }
}
