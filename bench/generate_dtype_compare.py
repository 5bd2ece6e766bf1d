#!/usr/bin/env python3
"""Greedy generation at batch 1 on a 12-layer GPT-2 (768 wide, 12 heads, feed-forward 3072,
vocab 21128, 1024 positions, random weights), uerzoo against transformers, f32 and low
precision, in interleaved rounds:

  cargo bench --no-run --bench generate      # prints the executable's path
  python3 bench/generate_dtype_compare.py --bench-bin target/release/deps/generate-… \\
      [--rounds 3] [--threads 2] [--new 64]

Each round runs, one after the other:
  1. the generate bench's low-precision section (UERZOO_BENCH_DTYPE_ITERS=1, the other
     sections off): uerzoo f32, `--dtype int8` and `--dtype bf16` (linear layers and LM head),
     the same 8-token prompt and `--new` greedy tokens with the KV cache;
  2. transformers' `GPT2LMHeadModel.generate` (greedy, KV cache, `--new` tokens forced) on
     the same shape: f32; `torch.ao.quantization.quantize_dynamic` (qint8) after turning
     GPT-2's `Conv1D` layers into `nn.Linear` (so every GEMM is quantized: torch's best case;
     a plain `quantize_dynamic` of the model would quantize only `lm_head`); and the f32 model
     under bf16 autocast.
Prints every round and a markdown table of the medians. Needs torch and transformers.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROMPT = [101, 791, 1921, 1921, 3698, 2523, 1962, 4638]


def uerzoo(a):
    env = dict(os.environ, UERZOO_BENCH_DTYPE_ITERS="1", UERZOO_BENCH_ITERS="0",
               UERZOO_BENCH_NOCACHE_ITERS="0", UERZOO_BENCH_BATCH_ITERS="0",
               UERZOO_BENCH_DTYPE_NEW=str(a.new), RAYON_NUM_THREADS=str(a.threads))
    out = subprocess.run([a.bench_bin, "--bench"], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        sys.exit(f"{a.bench_bin} failed:\n{out.stderr[-3000:]}")
    row = {}
    for line in out.stdout.splitlines():
        m = re.search(r"--dtype (\w+), \d+ new tokens: .*?, ([\d.]+) tokens/s", line)
        if m:
            row[m.group(1)] = float(m.group(2))
    if len(row) != 3:
        sys.exit(f"unexpected bench output:\n{out.stdout}")
    return row


def torch_models(threads):
    import torch
    from torch import nn
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.pytorch_utils import Conv1D

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    cfg = GPT2Config(n_layer=12, n_embd=768, n_head=12, n_inner=3072, vocab_size=21128,
                     n_positions=1024, bos_token_id=101, eos_token_id=None, pad_token_id=0)
    f32 = GPT2LMHeadModel(cfg).eval()
    linear = GPT2LMHeadModel(cfg).eval()
    linear.load_state_dict(f32.state_dict())

    def to_linear(module):
        for name, child in module.named_children():
            if isinstance(child, Conv1D):
                d_in, d_out = child.weight.shape
                lin = nn.Linear(d_in, d_out)
                lin.weight.data = child.weight.data.t().contiguous()
                lin.bias.data = child.bias.data
                setattr(module, name, lin)
            else:
                to_linear(child)

    to_linear(linear)
    int8 = torch.ao.quantization.quantize_dynamic(linear, {nn.Linear}, dtype=torch.qint8)
    return torch, f32, int8


def torch_round(torch, f32, int8, new):
    ids = torch.tensor([PROMPT])
    row = {}
    for name, model, autocast in [("f32", f32, False), ("int8", int8, False),
                                  ("bf16", f32, True)]:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                    enabled=autocast):
            kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, use_cache=True,
                      attention_mask=torch.ones_like(ids))
            model.generate(ids, **dict(kw, max_new_tokens=8, min_new_tokens=8))  # warm-up
            start = time.perf_counter()
            out = model.generate(ids, **kw)
            secs = time.perf_counter() - start
        assert out.shape[1] == len(PROMPT) + new, out.shape
        row[name] = new / secs
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench-bin", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--new", type=int, default=64)
    a = p.parse_args()
    torch, f32, int8 = torch_models(a.threads)
    rows = {"uerzoo": [], "torch": []}
    for r in range(a.rounds):
        u = uerzoo(a)
        t = torch_round(torch, f32, int8, a.new)
        rows["uerzoo"].append(u)
        rows["torch"].append(t)
        print(f"round {r + 1}: uerzoo {u}  torch {t}", flush=True)
    print("\n| tokens/s (median) | f32 | int8 | bf16 |\n|---|---:|---:|---:|")
    med = {}
    for side in ("uerzoo", "torch"):
        med[side] = {k: statistics.median(x[k] for x in rows[side]) for k in ("f32", "int8", "bf16")}
        print(f"| {side} | " + " | ".join(f"{med[side][k]:.1f}" for k in ("f32", "int8", "bf16"))
              + " |")
    for k in ("f32", "int8", "bf16"):
        per = [u[k] / t[k] for u, t in zip(rows["uerzoo"], rows["torch"])]
        own = [u[k] / u["f32"] for u in rows["uerzoo"]]
        print(f"{k}: uerzoo / torch per round {' '.join(f'{x:.2f}' for x in per)}, median "
              f"{statistics.median(per):.2f}; uerzoo {k} / uerzoo f32 median "
              f"{statistics.median(own):.2f}")


if __name__ == "__main__":
    main()
