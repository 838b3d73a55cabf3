#!/usr/bin/env bash
# Plugs vigie into ../shared/tools/peer-bench/run.sh as its variant (c): the same prefix
# sets as the nftables variant (b), loaded as one blocked catalog service, enforced by the
# daemon's XDP (or TC ingress) program on the gateway's LAN-facing veth.
#
# Usage (as root, from the repository root, after `cargo build --release -p vigie`; VIGIE=PATH,
# absolute, runs another binary):
#   VETH_NAPI=1 EXTRA_FILTER_NAME=vigie \
#   EXTRA_FILTER_CMD="$PWD/lab/tools/peer_bench_vigie.sh attach" \
#   EXTRA_FILTER_CLEANUP_CMD="$PWD/lab/tools/peer_bench_vigie.sh detach" \
#   ../shared/tools/peer-bench/run.sh 10,1000,50000 6
# For the TC ingress hook add VIGIE_HOOK=tc-ingress (VETH_NAPI=0 is then fine).
# Quick smoke test: SLOT=0.3 GUARD=0.1 ... run.sh 10 1
# Not 100,000: run.sh's random prefixes of every length put longer-than-/24 prefixes in 53,021
# /24 networks, past the 32,768 a policy slot holds (`limits::DST_V4_GROUPS_PER_SLOT`), and
# `vigie check` refuses the policy.
#
# run.sh calls `attach` inside the pb-gw namespace each time variant c becomes active (env
# IFACE, N, PREFIXES4, PREFIXES6) and `detach` when it stops being active. Policies are built
# once per prefix set and cached under $VIGIE_PEER_BENCH_DIR (default /tmp/vigie-peer-bench),
# where the daemon logs go too.
#
# Why a private bpffs: `ip netns exec` gives every command a private mount namespace with a
# fresh /sys, so /sys/fs/bpf is not a BPF filesystem there and nothing pinned in one call is
# seen by the next. `attach` mounts a bpffs on /sys/fs/bpf inside its own private mount
# namespace (never the machine's) and leaves a `sleep` holding that namespace, so that
# `detach` can enter it (nsenter -m) and run `vigie detach` on the very pins the daemon made.
# If anything dies early (run.sh's exit kills every process of pb-gw), the namespace goes
# with its last process and the pins, and so the program, go with it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VIGIE=${VIGIE:-$REPO/target/release/vigie}
HOOK=${VIGIE_HOOK:-xdp}
GW_NS=${VIGIE_PEER_BENCH_NETNS:-pb-gw}
WORK=${VIGIE_PEER_BENCH_DIR:-/tmp/vigie-peer-bench}
PIN_DIR=/sys/fs/bpf/vigie-peer-bench
DAEMON_PID=$WORK/daemon.pid   # the running daemon
HOLDER_PID=$WORK/holder.pid   # the process keeping the daemon's mount namespace alive
LOG=$WORK/daemon.log
READY_TIMEOUT=${VIGIE_READY_TIMEOUT:-180}   # seconds; 100,000 prefixes take a while to load

log() { echo "peer_bench_vigie: $*" >&2; }
die() { log "$*"; exit 1; }

# The program may only ever go on the gateway namespace's veth, and the bpffs only in a
# private mount namespace: refuse anywhere else.
guard_namespaces() {
    [ "$(ip netns identify)" = "$GW_NS" ] || die "not inside network namespace $GW_NS: refusing"
    [ "$(readlink /proc/self/ns/net)" != "$(readlink /proc/1/ns/net)" ] ||
        die "in the root network namespace: refusing"
    [ "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ] ||
        die "in the root mount namespace (run through 'ip netns exec'): refusing"
    [ -n "${IFACE:-}" ] && ip link show dev "$IFACE" >/dev/null 2>&1 ||
        die "IFACE '${IFACE:-}' is not an interface of $GW_NS"
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
read_pid() { cat "$1" 2>/dev/null || true; }

# Whether PID is still the process we started (a pid can be reused once it has exited).
is_ours() { # PID WORD
    alive "$1" && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}

# Builds (or reuses) a policy directory blocking one non-sovereign service that holds every
# prefix of both lists; prints its path. Keyed by N and the lists' checksum, since the lists
# depend on run.sh's SEED too.
policy_dir() {
    local sum dir tmp
    sum=$(cat "$PREFIXES4" "$PREFIXES6" | cksum | cut -d' ' -f1)
    dir=$WORK/policies/n$N-$sum
    if [ -f "$dir/.checked" ]; then echo "$dir"; return; fi
    tmp=$dir.tmp.$$
    rm -rf "$tmp"
    mkdir -p "$tmp/catalog"
    cat > "$tmp/policy.toml" <<'EOF'
# peer-bench: block the "bench" service, allow everything else.
[settings]
mode = "enforce"
default = "allow"
unparsed = "allow"

[[rule]]
name = "block-bench"
services = ["bench"]
action = "block"
EOF
    {
        echo '# The prefix sets of peer-bench (random, non-overlapping, plus its probe).'
        echo 'id = "bench"'
        echo 'name = "peer-bench prefix set"'
        echo 'operator = "peer-bench"'
        echo 'jurisdiction = "US"'
        echo 'category = "bench"'
        echo 'sovereign = false'
        echo 'prefixes = ['
        awk 'NF { printf "    \"%s\",\n", $1 }' "$PREFIXES4" "$PREFIXES6"
        echo ']'
        echo
        echo '[source]'
        echo 'vendor = "peer-bench gen_prefixes.py"'
        echo "retrieved = $(date +%F)"
    } > "$tmp/catalog/bench.toml"
    # Checked once, at build: a policy vigie refuses would only show up as a daemon that
    # never applies it.
    if ! "$VIGIE" check --policy "$tmp" > "$tmp/check.log" 2>&1; then
        cat "$tmp/check.log" >&2
        rm -rf "$tmp"
        die "vigie check refused the policy for N=$N"
    fi
    touch "$tmp/.checked"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    echo "$dir"
}

status_json() { "$VIGIE" status --json --pin-dir "$PIN_DIR" 2>/dev/null; }

attach() {
    guard_namespaces
    : "${N:?}" "${PREFIXES4:?}" "${PREFIXES6:?}"
    [ -x "$VIGIE" ] || die "no vigie binary at $VIGIE (set VIGIE)"
    command -v jq >/dev/null || die "needs jq"
    mkdir -p "$WORK"
    # A daemon or state left by an earlier attach that was never detached goes first.
    if [ -e "$DAEMON_PID" ] || [ -e "$HOLDER_PID" ] || [ -e "/run/vigie/_sys_fs_bpf_vigie_peer_bench.json" ]; then
        log "stale state from an earlier attach: detaching it first"
        detach
    fi
    local policy
    policy=$(policy_dir)

    # From here on, a failure must not leave the daemon, its program or its pins behind.
    trap 'rc=$?; if [ $rc != 0 ]; then log "attach failed, cleaning up"; detach || true; fi' EXIT

    # Private to this `ip netns exec` (checked by guard_namespaces): the machine's /sys is untouched.
    if [ "$(stat -f -c %T /sys/fs/bpf)" != bpf_fs ]; then
        mount -t bpf bpf /sys/fs/bpf
    fi
    nohup sleep infinity >/dev/null 2>&1 &
    echo $! > "$HOLDER_PID"
    {
        echo "=== $(date -Is) attach N=$N hook=$HOOK iface=$IFACE policy=$policy"
    } >> "$LOG"
    nohup "$VIGIE" run --iface "$IFACE" --hook "$HOOK" --policy "$policy" \
        --pin-dir "$PIN_DIR" --no-metrics --events /dev/null >> "$LOG" 2>&1 < /dev/null &
    local pid=$! t0=$SECONDS st gen
    echo "$pid" > "$DAEMON_PID"

    # Ready when the policy is in force (generation >= 1) and the program is attached to IFACE.
    while :; do
        alive "$pid" || { tail -n 20 "$LOG" >&2; die "vigie exited before applying the policy"; }
        st=$(status_json || true)
        gen=$(jq -r '.generation // 0' <<<"$st" 2>/dev/null || echo 0)
        if [ "${gen:-0}" -ge 1 ] && jq -e '.daemon_running and (.attachments | length > 0)' <<<"$st" >/dev/null 2>&1; then
            break
        fi
        [ $((SECONDS - t0)) -lt "$READY_TIMEOUT" ] ||
            { tail -n 20 "$LOG" >&2; die "policy not applied after ${READY_TIMEOUT}s"; }
        sleep 0.1
    done
    log "vigie ($HOOK) on $IFACE, N=$N, generation $gen, ready in $((SECONDS - t0)) s"
    trap - EXIT
}

detach() {
    guard_namespaces
    local pid holder i
    pid=$(read_pid "$DAEMON_PID")
    holder=$(read_pid "$HOLDER_PID")
    # Stop the daemon: SIGTERM, then wait for it to exit (it is not our child: poll).
    if is_ours "$pid" "$PIN_DIR"; then
        kill -TERM "$pid"
        for i in $(seq 200); do alive "$pid" || break; sleep 0.05; done
        if alive "$pid"; then
            log "vigie $pid ignored SIGTERM for 10 s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
            for i in $(seq 40); do alive "$pid" || break; sleep 0.05; done
        fi
    fi
    rm -f "$DAEMON_PID"
    # Remove the program, links and maps from inside the daemon's mount namespace, where its
    # bpffs is; without a holder that namespace, and every pin in it, is already gone, and
    # `vigie detach` here only clears its state file in /run/vigie.
    if is_ours "$holder" "sleep"; then
        nsenter -t "$holder" -m -- "$VIGIE" detach --pin-dir "$PIN_DIR" >&2
        nsenter -t "$holder" -m -- test ! -e "$PIN_DIR" || die "$PIN_DIR still there after vigie detach"
        kill -TERM "$holder" 2>/dev/null || true
    else
        "$VIGIE" detach --pin-dir "$PIN_DIR" >&2
    fi
    rm -f "$HOLDER_PID"
    # Nothing of vigie may stay on the interface (the next variant measures without it).
    if ip link show dev "$IFACE" | grep -q ' xdp'; then die "an XDP program is still on $IFACE"; fi
}

case "${1:-}" in
attach) attach ;;
detach) detach ;;
*)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
