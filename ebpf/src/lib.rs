//! The daemon's build script depends on this crate so that cargo rebuilds the kernel programs
//! when they change; the programs themselves are the `vigie` binary target (src/main.rs).
#![no_std]
