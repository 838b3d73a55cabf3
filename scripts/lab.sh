#!/usr/bin/env bash
# vigie's main job on its embedded defaults, in a throwaway lab: set-up, build, then a LAN
# host, a gateway running vigie, and "internet" hosts holding addresses of Zoom, Teams, Webex,
# GoTo, Google Meet and the state's Visio, all in network namespaces joined by veth (nothing
# leaves the machine). Sends traffic, shows what was blocked and what passed, cleans up.
# Arguments go to vigie-lab (e.g. --hook tc-ingress). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet
exec target/release/vigie-lab "$@"
