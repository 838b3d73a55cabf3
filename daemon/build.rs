//! Builds the kernel programs (the `vigie-ebpf` crate) with the pinned toolchain, so that the
//! daemon embeds the object it was tested with.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let ebpf = Package {
        name: "vigie-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf"),
        ..Package::default()
    };
    // -Z build-std=core on a stable toolchain: aya-build passes it when RUSTC_BOOTSTRAP=1.
    // SAFETY of the environment: build scripts are single-threaded.
    if std::env::var_os("RUSTC_BOOTSTRAP").is_none() {
        return Err(anyhow!(
            "RUSTC_BOOTSTRAP=1 must be set (see .cargo/config.toml)"
        ));
    }
    // The shipped policy and catalog are embedded with include_str!/include_dir!, which cargo
    // does not track on stable: rebuild when they change.
    println!("cargo:rerun-if-changed=../policies");
    aya_build::build_ebpf([ebpf], Toolchain::Custom("1.98.0")).context("building the eBPF programs")
}
