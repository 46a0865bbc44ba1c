#!/usr/bin/env bash
# Fuzzes the pure core with cargo-fuzz (libFuzzer + AddressSanitizer).
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 30 s, every target)
# Starts from the seed corpus in fuzz/corpus/<target>, first replays every saved crash input in
# fuzz/regressions/<target> (each must now pass), and saves new crashes in fuzz/artifacts/.
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP lets this machine's stable toolchain
# provide them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here/fuzz"
seconds=${1:-30}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(verify_token jwks claims gcra slot_table managed_keys)
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "[fuzz] installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "regressions/$target"
  if compgen -G "regressions/$target/*" >/dev/null; then
    echo "[fuzz] $target: replaying saved crash inputs"
    cargo fuzz run --sanitizer address "$target" regressions/$target/* -- -runs=1
  fi
  echo "[fuzz] $target: fuzzing for $seconds s"
  # Fuzz into a scratch copy so the committed seed corpus stays small.
  work=$(mktemp -d)
  cp -r "corpus/$target/." "$work/"
  log="$work.log"
  status=0
  cargo fuzz run --sanitizer address "$target" "$work" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    -max_len=65536 >"$log" 2>&1 || status=$?
  grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs|ERROR|SUMMARY|artifact" "$log" || true
  ((status == 0)) || tail -40 "$log"
  rm -f "$log"
  rm -rf "$work"
  if ((status != 0)); then
    echo "[fuzz] $target: FAILED (crash input saved under fuzz/artifacts/$target)"
    exit 1
  fi
done
echo "[fuzz] all targets passed"
