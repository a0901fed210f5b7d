#!/usr/bin/env bash
# Run every fuzz target for SECONDS (default 600) each, in parallel, from the committed
# seed corpus. Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain the
# sanitizer flags are enabled with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-600}"
export RUSTC_BOOTSTRAP=1
targets=(envelope csv_row query)
for t in "${targets[@]}"; do cargo fuzz build "$t"; done
pids=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -artifact_prefix="artifacts/$t/" > "fuzz-$t.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then echo "${targets[$i]}: no crash in ${secs}s ($(grep -o 'Done [0-9]* runs' "fuzz-${targets[$i]}.log" | tail -1))"; else echo "${targets[$i]}: FAILED, see fuzz/fuzz-${targets[$i]}.log and fuzz/artifacts/${targets[$i]}/"; status=1; fi
done
exit $status
