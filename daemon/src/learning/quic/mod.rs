//! Reads the TLS server name (SNI) from the Initial packets a QUIC client
//! sends to open a connection, as an on-path gateway sees them.
//!
//! Initial packets are encrypted with keys anyone can derive from the
//! client's Destination Connection ID (RFC 9001 5.2, RFC 9369 for v2), so
//! the ClientHello is readable without any secret. [`InitialReader`] follows
//! one connection: it removes header protection, decrypts, walks the frames,
//! reassembles the CRYPTO stream (which clients split and shuffle across
//! packets and datagrams) and parses the ClientHello once it is whole.
//!
//! No input can make the crate panic: all parsing goes through a
//! bounds-checked cursor and every length is checked before use.

mod client_hello;
mod crypto_stream;
mod cursor;
mod error;
mod frames;
mod initial;
mod reader;
#[cfg(test)]
mod testutil;

pub use client_hello::ClientHelloInfo;
pub use crypto_stream::MAX_CRYPTO;
pub use error::QuicError;
pub use initial::{Version, long_header_version, version_of};
pub use reader::{InitialReader, Progress};
