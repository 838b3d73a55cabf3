//! The eBPF crate links with bpf-linker, which cargo does not know about: rebuild when it changes.
//!
//! bpf-linker asks LLVM to expand `memcpy` in order by default, which also turns every `memset`
//! and `memmove` (clearing the 12 bytes after an IPv4 address, copying a flow key into an
//! event) into a call to a byte-by-byte loop: a BPF function call each, on every packet. Without
//! that option LLVM expands them into loads and stores (up to 128 of them each: the kernel
//! programs' copies are all far smaller; the disassembly has no call to `memset`, `memmove` or
//! `memcpy` left).
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    if std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "bpf") {
        println!("cargo:rustc-link-arg=--disable-expand-memcpy-in-order");
    }
}
