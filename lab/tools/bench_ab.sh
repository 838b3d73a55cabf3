#!/usr/bin/env bash
# Compares builds of bench_datapath side by side: runs each binary in turn, REPS times, and
# prints every figure of "added" (ns over the bare program) per binary, hook and case, with
# their mean. Alternating the binaries spreads the shared machine's drift over all of them,
# which a before-and-after pair of runs does not.
#
# Usage: lab/tools/bench_ab.sh PREFIXES REPS BINARY...
#   e.g. cp target/release/examples/bench_datapath /tmp/before   (then change, rebuild)
#        lab/tools/bench_ab.sh 10 3 /tmp/before target/release/examples/bench_datapath
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n 2,9p "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
prefixes=$1 reps=$2
shift 2
for _ in $(seq "$reps"); do
    for binary in "$@"; do
        "$binary" --prefixes "$prefixes" --rounds 2 |
            awk -v b="$binary" '$1 == "xdp" || $1 == "tc" { print b, $1, $3, $7 }'
    done
done | awk '
    { key = $1 " " $2 " " $3; sum[key] += $4; n[key]++; runs[key] = runs[key] " " $4 }
    END { for (key in sum) printf "%-60s mean %+8.1f  [%s ]\n", key, sum[key] / n[key], runs[key] }
' | sort
