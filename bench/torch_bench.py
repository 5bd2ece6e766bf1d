#!/usr/bin/env python3
"""PyTorch side of `cargo bench --bench kernels`: the same shapes and the same work, eager.

Builds UER-py's BERT (word_pos_seg embedding + LN, post-LN transformer, GELU erf, UER
LayerNorm) and a GPT-2-like causal pre-LN model of the same size with random weights, and
prints medians of forward tokens/s (the encoder's hidden states, no_grad; `forward_int8`:
the same model after `torch.ao.quantization.quantize_dynamic` — every nn.Linear in qint8
weights with activations quantized per batch on the fly, as torch users deploy int8 on a
CPU; the quantized engine is torch's default, fbgemm/x86 on x86; `forward_bf16`: the f32 model
under `torch.autocast(..., dtype=torch.bfloat16)`), training-step
tokens/s (UER-py's dropouts, MLM loss on every 7th position, backward; dropout 0.1 and 0) and
greedy generation tokens/s (batch 1, 32-token prompt, 32 new tokens, full recompute).

    python3 bench/torch_bench.py --config tiny --threads 2 [--iters 10] [--json]
                                 [--only forward,forward_int8,forward_bf16,train_dropout,train_no_dropout,generate]
                                 [--device cpu|cuda]   (cuda: what bench/gpu-check.sh runs)
"""
import argparse
import json
import math
import statistics
import time

try:
    import torch
    from torch import nn
except ImportError as e:
    raise SystemExit(f"torch_bench.py needs torch ({e}): pip install torch")

VOCAB = 21128
DEVICE = torch.device("cpu")
CONFIGS = {  # layers, hidden, heads, feed-forward, batch, seq
    "tiny": (2, 128, 2, 512, 32, 128),
    "base": (12, 768, 12, 3072, 8, 128),
}


class UerLayerNorm(nn.Module):
    """UER-py: (x - mean) / (std_unbiased + eps) * gamma + beta."""

    def __init__(self, n, eps=1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(n))
        self.beta = nn.Parameter(torch.zeros(n))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.gamma * (x - mean) / (std + self.eps) + self.beta


class Layer(nn.Module):
    def __init__(self, h, heads, ff, p, pre_ln, act):
        super().__init__()
        self.heads, self.p, self.pre_ln, self.act = heads, p, pre_ln, act
        self.q, self.k, self.v, self.o = (nn.Linear(h, h) for _ in range(4))
        self.ff1, self.ff2 = nn.Linear(h, ff), nn.Linear(ff, h)
        self.ln1, self.ln2 = UerLayerNorm(h), UerLayerNorm(h)
        self.drop = nn.Dropout(p)

    def attn(self, x, bias):
        b, s, h = x.shape
        split = lambda t: t.view(b, s, self.heads, h // self.heads).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(h // self.heads) + bias
        probs = self.drop(torch.softmax(scores, -1))
        ctx = (probs @ v).transpose(1, 2).reshape(b, s, h)
        return self.drop(self.o(ctx))

    def ff(self, x):
        return self.drop(self.ff2(self.act(self.ff1(x))))

    def forward(self, x, bias):
        if self.pre_ln:
            x = x + self.attn(self.ln1(x), bias)
            return x + self.ff(self.ln2(x))
        x = self.ln1(x + self.attn(x, bias))
        return self.ln2(x + self.ff(x))


class Model(nn.Module):
    def __init__(self, layers, h, heads, ff, p, causal):
        super().__init__()
        act = (lambda x: nn.functional.gelu(x, approximate="tanh")) if causal else nn.functional.gelu
        self.causal = causal
        self.word, self.pos, self.seg = nn.Embedding(VOCAB, h), nn.Embedding(512, h), nn.Embedding(3, h)
        self.emb_ln = None if causal else UerLayerNorm(h)
        self.layers = nn.ModuleList(Layer(h, heads, ff, p, causal, act) for _ in range(layers))
        self.final_ln = UerLayerNorm(h) if causal else None
        self.drop = nn.Dropout(p)
        if causal:
            self.lm = nn.Linear(h, VOCAB, bias=False)
        else:
            self.mlm1, self.mlm_ln, self.mlm2 = nn.Linear(h, h), UerLayerNorm(h), nn.Linear(h, VOCAB)
        self.act = act

    def encode(self, ids, seg):
        b, s = ids.shape
        x = self.word(ids) + self.pos(torch.arange(s, device=ids.device).unsqueeze(0))
        if self.causal:
            bias = torch.triu(torch.full((s, s), -10000.0, device=ids.device), 1).view(1, 1, s, s)
        else:
            x = self.emb_ln(x + self.seg(seg))
            bias = ((seg > 0).float() - 1.0).mul(10000.0).view(b, 1, 1, s)
        x = self.drop(x)
        for layer in self.layers:
            x = layer(x, bias)
        return self.final_ln(x) if self.causal else x

    def head(self, h):
        if self.causal:
            return self.lm(h)
        return self.mlm2(self.mlm_ln(self.act(self.mlm1(h))))


def inputs(batch, seq):
    ids = (torch.arange(batch * seq) * 7919 % 21000 + 100).view(batch, seq)
    return ids.to(DEVICE), torch.ones(batch, seq, dtype=torch.long, device=DEVICE)


def timed(iters, f):
    sync = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)
    f()
    sync()
    runs = []
    for _ in range(iters):
        t = time.perf_counter()
        f()
        sync()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


KEYS = ("forward", "forward_int8", "forward_bf16", "train_dropout", "train_no_dropout", "generate")


def bench(name, iters, only=KEYS):
    layers, h, heads, ff, batch, seq = CONFIGS[name]
    tokens = batch * seq
    ids, seg = inputs(batch, seq)
    out = {}
    model = Model(layers, h, heads, ff, 0.1, False).to(DEVICE)
    model.eval()

    def forward():
        with torch.no_grad():
            model.encode(ids, seg)

    if "forward" in only:
        out["forward"] = tokens / timed(iters, forward)
    if "forward_int8" in only:
        if DEVICE.type != "cpu":
            raise SystemExit("forward_int8: torch's dynamic int8 runs on the CPU only")
        # A quantized copy (inplace=False): the f32 model stays for the measurements below.
        qmodel = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
        qmodel.eval()

        def forward_int8():
            with torch.no_grad():
                qmodel.encode(ids, seg)

        out["forward_int8"] = tokens / timed(iters, forward_int8)
        del qmodel
    if "forward_bf16" in only:
        # The f32 model under autocast: matmuls (nn.Linear, the attention products) in bf16
        # (oneDNN's AVX-512 BF16 / AMX kernels where the CPU has them), the rest f32.
        def forward_bf16():
            with torch.no_grad(), torch.autocast(DEVICE.type, dtype=torch.bfloat16):
                model.encode(ids, seg)

        out["forward_bf16"] = tokens / timed(iters, forward_bf16)
    picked = torch.arange(0, tokens, 7, device=DEVICE)
    targets = (picked * 31 % VOCAB).clamp(min=1)
    for key, p in (("train_dropout", 0.1), ("train_no_dropout", 0.0)):
        if key not in only:
            continue
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = p
        model.train()

        def step():
            model.zero_grad(set_to_none=True)
            hidden = model.encode(ids, seg).reshape(tokens, h)[picked]
            loss = nn.functional.cross_entropy(model.head(hidden), targets)
            loss.backward()

        out[key] = tokens / timed(iters, step)
    if "generate" not in only:
        return out
    gpt = Model(layers, h, heads, ff, 0.1, True).to(DEVICE)
    gpt.eval()

    def generate():
        ids = (torch.arange(32, device=DEVICE) * 7919 % 21000 + 100).view(1, 32)
        with torch.no_grad():
            for _ in range(32):
                logits = gpt.head(gpt.encode(ids, None))
                ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)

    out["generate"] = 32 / timed(min(iters, 3), generate)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--only", default=",".join(KEYS), help="comma-separated measurements to run")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    only = args.only.split(",")
    unknown = [k for k in only if k not in KEYS]
    if unknown:
        ap.error(f"--only: unknown measurement {unknown[0]!r} (known: {', '.join(KEYS)})")
    out = bench(args.config, args.iters, only)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"torch {torch.__version__}, {args.threads} threads, {args.config}: " + ", ".join(f"{k} {v:.0f} tok/s" for k, v in out.items()))


if __name__ == "__main__":
    main()
