#!/usr/bin/env bash
# The whole test suite: set-up (idempotent), build, unit tests, kernel-program tests through
# BPF_PROG_TEST_RUN, and end-to-end tests in network namespaces. Privileged tests need root;
# with VIGIE_REQUIRE_PRIVILEGED=1 (CI) a privileged test that cannot run fails instead of
# skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all --check
# The kernel crate only builds for the BPF target: lint it there, the rest on the host.
cargo clippy --workspace --exclude vigie-ebpf --all-targets --quiet -- -D warnings
(cd ebpf && RUSTC_BOOTSTRAP=1 cargo clippy --quiet --target bpfel-unknown-none -Z build-std=core --bins -- -D warnings)
cargo build --workspace --exclude vigie-ebpf --all-targets --quiet
cargo test --workspace --exclude vigie-ebpf --no-fail-fast -- --test-threads=2
