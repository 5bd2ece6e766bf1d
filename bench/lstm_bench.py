#!/usr/bin/env python3
"""PyTorch side of `cargo bench --bench lstm`: torch `nn.LSTM` forward (batch_first,
unidirectional, zero initial state, no_grad, eval) on the zoo LSTM's shape, tokens/s
(batch × seq / the median time of one forward).

    python3 bench/lstm_bench.py --threads 2 [--iters 3]   # one measurement
    python3 bench/lstm_bench.py --threads 2 --serve       # one line per request on stdin:
                                                           # "N" → median over N forwards
"""
import argparse
import statistics
import sys
import time

import torch
from torch import nn


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--emb", type=int, default=512)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--serve", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    lstm = nn.LSTM(a.emb, a.hidden, a.layers, batch_first=True).eval()
    x = torch.rand(a.batch, a.seq, a.emb) * 2 - 1
    zero = torch.zeros(a.layers, a.batch, a.hidden)

    def run(iters):
        times = []
        with torch.no_grad():
            for _ in range(iters):
                t = time.perf_counter()
                lstm(x, (zero, zero))
                times.append(time.perf_counter() - t)
        return a.batch * a.seq / statistics.median(times)

    run(1)  # warm-up
    if a.serve:
        print(f"ready torch {torch.__version__} threads {torch.get_num_threads()}", flush=True)
        for line in sys.stdin:
            print(f"{run(int(line)):.1f}", flush=True)
    else:
        print(f"{run(a.iters):.1f}")


if __name__ == "__main__":
    main()
