#!/usr/bin/env bash
# Idempotent set-up of everything vigie needs on a fresh Debian 12 machine:
# apt packages, the pinned Rust toolchain, bpf-linker built against Debian's LLVM 22.
# A second run finds everything in place and returns in about a second.
set -euo pipefail

RUST_VERSION=1.98.0
BPF_LINKER_VERSION=0.13.0
APT_PACKAGES=(llvm-22-dev libzstd-dev zlib1g-dev libpolly-22-dev iproute2 iputils-ping
              bpftool netcat-openbsd ethtool prometheus curl openssl dnsmasq-base
              bind9-dnsutils)

log() { printf 'setup: %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v rustup >/dev/null; then
    log "rustup is missing: this machine kind ships it; install rustup first" && exit 1
fi
if ! rustup toolchain list | grep -q "^$RUST_VERSION"; then
    log "installing Rust $RUST_VERSION"
    rustup toolchain install "$RUST_VERSION" --profile minimal -c rust-src,rustfmt,clippy
fi

if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
    log "building bpf-linker $BPF_LINKER_VERSION against LLVM 22 (a few minutes, once)"
    LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
        cargo +"$RUST_VERSION" install bpf-linker --version "$BPF_LINKER_VERSION" --locked \
        --no-default-features --features llvm-22
fi
log "ready"
