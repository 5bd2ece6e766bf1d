#!/usr/bin/env bash
# Checks that `pip install .` gives a working `uerzoo` in a fresh virtual environment.
set -euo pipefail

usage() {
    cat <<'HELP'
Usage: bench/pip-install-check.sh [--keep] [--python PYTHON]

Checks the Python wheel (pyproject.toml: maturin, bindings = "bin"): makes a fresh venv in a
temporary folder, runs `pip install .` from the repository root (pip fetches maturin from
PyPI and maturin runs a release `cargo build` into this checkout's target/), then runs
`uerzoo --version`, `uerzoo list` and `uerzoo info tiny` from the venv's bin/ (not from PATH),
and reports how long the install took. Exit status 0 when all of it works.

Needs network access to PyPI (maturin) and crates.io (unless the crates are already in
cargo's cache). Not part of .ci/run: the release build is too long for its budget
(33 minutes from a cold target/ on a busy 2-core VM: "pip install . took 1958 s").

Options:
  --keep           keep the temporary venv and print its path
  --python PYTHON  the interpreter that makes the venv (default: python3)
  -h, --help       this text
HELP
}

keep=0
python=python3
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --keep) keep=1 ;;
        --python) python="$2"; shift ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
if [ "$keep" = 0 ]; then
    trap 'rm -rf "$tmp"' EXIT
fi

"$python" -m venv "$tmp/venv"
bin="$tmp/venv/bin"
[ -d "$bin" ] || bin="$tmp/venv/Scripts"

start=$(date +%s)
"$bin/python" -m pip install --quiet --disable-pip-version-check "$root"
took=$(( $(date +%s) - start ))

[ -x "$bin/uerzoo" ] || { echo "FAIL: pip install . put no uerzoo in $bin" >&2; exit 1; }
"$bin/uerzoo" --version
"$bin/uerzoo" list > "$tmp/list.txt"
echo "uerzoo list: $(wc -l < "$tmp/list.txt") lines"
"$bin/uerzoo" info tiny > "$tmp/info.txt"
echo "uerzoo info tiny: $(head -1 "$tmp/info.txt")"
wheel_size=$(du -k "$bin/uerzoo" | cut -f1)
echo "OK: pip install . took ${took} s; $bin/uerzoo is ${wheel_size} KiB"
if [ "$keep" = 1 ]; then
    echo "kept: $tmp"
fi
