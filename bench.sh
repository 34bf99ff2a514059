#!/usr/bin/env bash
# Runs qrelay's benchmarks and reports the headline figures against their
# baselines: a table on stdout, bench.json in the repository root.
#
#   ./bench.sh                 all groups, 5 rounds
#   ./bench.sh --only otp      one group
#   ./bench.sh --quick         CI smoke run: 1 short round
#   ./bench.sh --help          all flags
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
exec go run ./perf/cmd/qrelay-bench "$@"
