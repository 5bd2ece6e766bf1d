#!/bin/sh
# Runs every fuzz target for SECS seconds (default 1830), three then two at a time, at
# nice 19, keeping what each finds in corpus/<target>; logs in $LOGS (default /tmp/fuzzlogs).
# Build first (README.md). Prints each target's final stats line.
set -u
SECS=${SECS:-1830}
LOGS=${LOGS:-/tmp/fuzzlogs}
BIN=target/x86_64-unknown-linux-gnu/release
mkdir -p "$LOGS"
run() {
  nice -n 19 "$BIN/$1" "corpus/$1" -max_total_time="$SECS" -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$LOGS/$1-" >"$LOGS/$1.log" 2>&1
  echo "$1: exit $?"
}
run dataset & run torch_zip & run torch_legacy & wait
run safetensors & run pickle & wait
