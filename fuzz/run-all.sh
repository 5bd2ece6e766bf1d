#!/bin/sh
# Runs every fuzz target for SECS seconds (default 1830), three then two at a time, at
# nice 19. Each starts from its kept corpus (corpora/<target>.tar.gz, unpacked into
# corpus/<target>/ when that is missing); afterwards the grown corpus is minimised
# (-merge=1) and packed back into corpora/. Logs and any crashing input go to $LOGS
# (default /tmp/fuzzlogs). Build first (README.md). Prints each target's exit status.
set -u
SECS=${SECS:-1830}
LOGS=${LOGS:-/tmp/fuzzlogs}
BIN=target/x86_64-unknown-linux-gnu/release
mkdir -p "$LOGS" corpus
run() {
  [ -d "corpus/$1" ] || tar -C corpus -xzf "corpora/$1.tar.gz"
  nice -n 19 "$BIN/$1" "corpus/$1" -max_total_time="$SECS" -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$LOGS/$1-" >"$LOGS/$1.log" 2>&1
  echo "$1: exit $?"
  rm -rf "min/$1" && mkdir -p "min/$1"
  "$BIN/$1" -merge=1 "min/$1" "corpus/$1" >"$LOGS/merge-$1.log" 2>&1 &&
    tar -C min -czf "corpora/$1.tar.gz" "$1"
}
run dataset & run torch_zip & run torch_legacy & wait
run safetensors & run pickle & wait
