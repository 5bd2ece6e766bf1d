#!/usr/bin/env python3
"""Base forward (8×128 tokens, 12 layers, 768) in tokens/s, uerzoo against torch, one command:

  python3 bench/int8_compare.py [--rounds 3] [--threads 2]

Each round runs, one after the other:
  1. the kernels bench (`cargo bench --bench kernels`'s executable, built beforehand with
     `cargo bench --no-run --bench kernels`) with UERZOO_BENCH_CONFIG=base
     UERZOO_BENCH_ONLY=forward,forward_int8: uerzoo f32 and int8 on the CPU's fastest int8 path;
  2. bench/torch_bench.py --config base --only forward,forward_int8,forward_bf16: torch f32,
     `quantize_dynamic` (nn.Linear, qint8) and f32 under bf16 autocast;
  3. the same uerzoo bench with UERZOO_BENCH_INT8_PATH=avx2 (the AVX2 int8 kernel forced).
Prints every round and a markdown table of medians. Needs torch (this Python's).
"""

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def uerzoo(a, path=None):
    env = dict(os.environ, UERZOO_BENCH_CONFIG="base", UERZOO_BENCH_ONLY="forward,forward_int8",
               UERZOO_BENCH_ROUNDS="1", UERZOO_BENCH_PLAIN="0", UERZOO_BENCH_TORCH="0",
               UERZOO_BENCH_OPS="0", UERZOO_BENCH_ITERS=str(a.iters),
               RAYON_NUM_THREADS=str(a.threads))
    if path:
        env["UERZOO_BENCH_INT8_PATH"] = path
    out = subprocess.run([a.bench_bin, "--bench"], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        sys.exit(f"{a.bench_bin} failed:\n{out.stderr[-3000:]}")
    row = {}
    for line in out.stdout.splitlines():
        m = re.match(r"\s*base\s+kernels: (.*) \(tok/s\)", line)
        if m:
            for cell in m.group(1).split(" | "):
                k, v = cell.split()
                row[k] = float(v)
        m = re.match(r"int8 kernel path: (\S+)", line)
        if m:
            row["path"] = m.group(1)
    if "forward" not in row:
        sys.exit(f"no base row in the kernels bench's output:\n{out.stdout[-3000:]}")
    return row


def torch_side(a):
    out = subprocess.run([sys.executable, os.path.join(HERE, "torch_bench.py"), "--config", "base",
                          "--threads", str(a.threads), "--iters", str(a.iters), "--json",
                          "--only", "forward,forward_int8,forward_bf16"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"torch_bench.py failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--no-avx2", action="store_true", help="skip the forced AVX2 int8 run")
    p.add_argument("--bench-bin", help="the built kernels bench (default: the newest "
                   "target/release/deps/kernels-*, from `cargo bench --no-run --bench kernels`)")
    a = p.parse_args()
    if not a.bench_bin:
        # The built executable, not `cargo bench`: cargo rebuilds the library whenever the
        # repository's HEAD or packed refs move (the commit is compiled in), which would land
        # a release build inside the measurements.
        bins = glob.glob(os.path.join(ROOT, "target/release/deps/kernels-*"))
        bins = [b for b in bins if os.access(b, os.X_OK) and not b.endswith(".d")]
        if not bins:
            sys.exit("no kernels bench built: cargo bench --no-run --bench kernels")
        a.bench_bin = max(bins, key=os.path.getmtime)
    try:
        import torch
    except ImportError as e:
        sys.exit(f"int8_compare.py needs torch ({e}): pip install torch")
    print(f"torch {torch.__version__}, {a.threads} threads", file=sys.stderr)
    rows = {}
    for rnd in range(a.rounds):
        u = uerzoo(a)
        t = torch_side(a)
        got = {f"uerzoo f32": u["forward"], f"uerzoo int8 ({u.get('path', '?')})": u["forward_int8"],
               "torch f32": t["forward"], "torch dynamic int8": t["forward_int8"],
               "torch bf16 autocast": t["forward_bf16"]}
        if not a.no_avx2:
            v = uerzoo(a, "avx2")
            got["uerzoo f32 (avx2 run)"] = v["forward"]
            got[f"uerzoo int8 ({v.get('path', '?')}, forced)"] = v["forward_int8"]
        for k, x in got.items():
            rows.setdefault(k, []).append(x)
        print(f"round {rnd + 1}: " + ", ".join(f"{k} {x:.1f}" for k, x in got.items()),
              file=sys.stderr)
    print("| forward, base 8×128 | tokens/s per round | median |")
    print("|---|---|---:|")
    for k, xs in rows.items():
        print(f"| {k} | {', '.join(f'{x:.1f}' for x in xs)} | {statistics.median(xs):.1f} |")
    ratio = lambda n, d: statistics.median(x / y for x, y in zip(rows[n], rows[d]))
    q = next(k for k in rows if k.startswith("uerzoo int8") and "forced" not in k)
    print(f"uerzoo int8 / torch dynamic int8: {ratio(q, 'torch dynamic int8'):.2f}× "
          "(median of per-round ratios)")
    print(f"uerzoo int8 / uerzoo f32: {ratio(q, 'uerzoo f32'):.2f}×")
    print(f"uerzoo f32 / torch f32: {ratio('uerzoo f32', 'torch f32'):.2f}×")
    if not a.no_avx2:
        f = next(k for k in rows if k.endswith("forced)"))
        print(f"uerzoo int8 avx2 forced / uerzoo f32 (same run): "
              f"{ratio(f, 'uerzoo f32 (avx2 run)'):.2f}×")


if __name__ == "__main__":
    main()
