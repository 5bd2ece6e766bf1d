#!/usr/bin/env python3
"""UER-py's own model code against `uerzoo forward`, whole process, on one RoBERTa-base file.

Three sub-commands:

  write DIR     a RoBERTa-base (12 layers, 768, UER-py's models/bert/base_config.json) with
                random weights, built by UER-py's `build_model` with its own initialisation and
                saved by `torch.save` (the zip `.bin` UER-py writes): DIR/uer_model.bin,
                uer_config.json, vocab.txt, and inputs DIR/in_{B}x{S}.safetensors
                (`input_ids`, `segment`, the layout `uerzoo forward --input` reads).
  run           one measured process: import torch and UER-py, build the model the way
                scripts/extract_features.py does (Embedding + encoder from the config,
                `load_model`), optionally `quantize_dynamic` (nn.Linear, qint8), run the
                encoder on the input, save the hidden states (and the MLM logits when the
                file has the MLM head, as `uerzoo forward` does) as safetensors.
  bench         the table: interleaved rounds of `uerzoo forward` and `run` as whole
                processes (wall time, peak RSS), median per row, then the cosine of each int8
                run's hidden states to its own f32 run's. One command:

    python3 bench/uer_py_forward.py bench --uerzoo target/release/uerzoo

Needs torch and a UER-py checkout (--uer-py, default $UER_PY or /work/uer-py).
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def need_torch():
    try:
        import torch  # noqa: F401
        import safetensors  # noqa: F401
    except ImportError as e:
        sys.exit(f"uer_py_forward.py needs torch and safetensors ({e}); "
                 "install them (pip install torch safetensors) or run with a Python that has them")


def import_uer(uer_py):
    if not os.path.isdir(os.path.join(uer_py, "uer")):
        sys.exit(f"no UER-py checkout at {uer_py} (give --uer-py or set UER_PY)")
    sys.path.insert(0, uer_py)
    # UER-py reads models/special_tokens_map.json relative to the working directory.
    os.chdir(uer_py)


def uer_args(uer_py, config, vocab):
    """UER-py's argument namespace, as scripts/extract_features.py makes it."""
    from uer.opts import infer_opts, tokenizer_opts
    from uer.utils.config import load_hyperparam
    from uer.utils import str2tokenizer
    parser = argparse.ArgumentParser()
    infer_opts(parser)
    tokenizer_opts(parser)
    argv = ["--config_path", config, "--vocab_path", vocab,
            "--test_path", "-", "--prediction_path", "-"]
    args = parser.parse_args(argv)
    # load_hyperparam reads command-line overrides from sys.argv: give it UER-py's own.
    saved, sys.argv = sys.argv, ["uer"] + argv
    try:
        args = load_hyperparam(args)
    finally:
        sys.argv = saved
    args.tokenizer = str2tokenizer[args.tokenizer](args)
    return args


def cmd_write(a):
    need_torch()
    import_uer(a.uer_py)
    import torch
    from safetensors.torch import save_file
    from uer.model_builder import build_model
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.uer_py, "models/bert/base_config.json")) as f:
        cfg = json.load(f)
    # RoBERTa: BERT's encoder, the MLM target only (UER-py's RoBERTa recipe).
    cfg.update({"target": ["mlm"], "data_processor": "mlm"})
    with open(os.path.join(a.dir, "uer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    vocab = os.path.join(a.dir, "vocab.txt")
    shutil.copy(os.path.join(ROOT, "vocab/google_zh_vocab.txt"), vocab)
    args = uer_args(a.uer_py, os.path.join(a.dir, "uer_config.json"), vocab)
    torch.manual_seed(1)
    model = build_model(args)
    # UER-py's pretrain.py initialisation: normal(0, 0.02) for everything but LayerNorm.
    for n, p in model.named_parameters():
        if "gamma" not in n and "beta" not in n:
            p.data.normal_(0, 0.02)
    torch.save(model.state_dict(), os.path.join(a.dir, "uer_model.bin"))
    g = torch.Generator().manual_seed(2)
    for b, s in [(1, 8), (8, 128), (32, 128)]:
        ids = torch.randint(100, 21000, (b, s), generator=g, dtype=torch.int64)
        ids[:, 0] = args.tokenizer.vocab["[CLS]"]
        save_file({"input_ids": ids, "segment": torch.ones(b, s, dtype=torch.int64)},
                  os.path.join(a.dir, f"in_{b}x{s}.safetensors"))
    print(f"wrote {a.dir}")


def cmd_run(a):
    need_torch()
    import_uer(a.uer_py)
    import torch
    from safetensors.torch import load_file, save_file
    from uer.embeddings import Embedding, str2embedding
    from uer.encoders import str2encoder
    from uer.targets import str2target
    torch.set_num_threads(a.threads)
    d = os.path.dirname(os.path.abspath(a.model))
    args = uer_args(a.uer_py, a.config or os.path.join(d, "uer_config.json"),
                    a.vocab or os.path.join(d, "vocab.txt"))

    class Encoder(torch.nn.Module):
        """scripts/extract_features.py's FeatureExtractor, without pooling, plus the MLM
        head when the file has one (what `uerzoo forward` computes)."""

        def __init__(self, args, mlm):
            super().__init__()
            self.embedding = Embedding(args)
            for name in args.embedding:
                self.embedding.update(str2embedding[name](args, len(args.tokenizer.vocab)), name)
            self.encoder = str2encoder[args.encoder](args)
            self.mlm = mlm and str2target["mlm"](args, len(args.tokenizer.vocab))

        def forward(self, src, seg):
            hidden = self.encoder(self.embedding(src, seg), seg)
            if not self.mlm:
                return hidden, None
            m = self.mlm
            x = m.layer_norm(m.act(m.linear_1(hidden)))
            return hidden, m.linear_2(x)

    state = torch.load(a.model, map_location="cpu")
    mlm = a.logits and any(k.startswith("target.mlm.") for k in state)
    model = Encoder(args, mlm)
    if mlm:
        state = {(k[len("target."):] if k.startswith("target.mlm.") else k): v
                 for k, v in state.items()}
    missing, _ = model.load_state_dict(state, strict=False)
    if missing:
        sys.exit(f"{a.model}: UER-py's model wants keys the file lacks: {missing[:5]}")
    model.eval()
    if a.dtype == "int8":
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                       dtype=torch.qint8)
    inp = load_file(a.input)
    with torch.no_grad():
        hidden, logits = model(inp["input_ids"], inp["segment"])
    out = {"hidden": hidden.contiguous()}
    if logits is not None:
        out["logits"] = logits.contiguous()
    save_file(out, a.output)


def measure(cmd, env=None):
    """Wall seconds, the child's own peak RSS (bytes) and its stderr, one whole process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - start
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{text}")
    return wall, ru.ru_maxrss * 1024, text


def cosines(a_path, b_path):
    """min and mean cosine over positions of `hidden` in two safetensors files."""
    import torch
    from safetensors.torch import load_file
    a, b = load_file(a_path)["hidden"], load_file(b_path)["hidden"]
    c = torch.nn.functional.cosine_similarity(a.flatten(0, -2).double(),
                                              b.flatten(0, -2).double(), dim=-1)
    return float(c.min()), float(c.mean())


def cmd_bench(a):
    need_torch()
    import_uer(a.uer_py)
    uerzoo = os.path.abspath(a.uerzoo)
    if not os.access(uerzoo, os.X_OK):
        sys.exit(f"no uerzoo binary at {uerzoo} (cargo build --release --bin uerzoo)")
    d = a.dir or tempfile.mkdtemp(prefix="uer_py_forward_", dir=os.path.join(ROOT, "target"))
    if not os.path.exists(os.path.join(d, "uer_model.bin")):
        subprocess.run([sys.executable, __file__, "write", d, "--uer-py", a.uer_py], check=True)
    model = os.path.join(d, "uer_model.bin")
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    rows = []
    for shape in a.shapes.split(","):
        inp = os.path.join(d, f"in_{shape}.safetensors")
        for dtype in a.dtypes.split(","):
            o = lambda who: os.path.join(d, f"out_{who}_{shape}_{dtype}.safetensors")
            rows.append((f"uerzoo forward {shape} {dtype}", o("uerzoo"),
                         [uerzoo, "forward", model, "--input", inp, "--output", o("uerzoo"),
                          "--force", "--dtype", dtype]))
            rows.append((f"UER-py {shape} {dtype}", o("uer"),
                         [sys.executable, __file__, "run", "--model", model, "--input", inp,
                          "--output", o("uer"), "--dtype", dtype, "--threads", str(a.threads),
                          "--uer-py", a.uer_py]))
    times = {r[0]: [] for r in rows}
    rss = {r[0]: 0 for r in rows}
    for rnd in range(a.rounds):
        for name, out, cmd in rows:
            if os.path.exists(out):
                os.remove(out)
            wall, peak, err = measure(cmd, env)
            if not os.path.exists(out):
                sys.exit(f"{name} wrote no output:\n{' '.join(cmd)}\n{err}")
            times[name].append(wall)
            rss[name] = max(rss[name], peak)
            print(f"round {rnd + 1} {name}: {wall:.3f} s", file=sys.stderr)
    print(f"| run | per round s | median s | peak RSS MiB |")
    print(f"|---|---|---:|---:|")
    for name, _, _ in rows:
        t = times[name]
        print(f"| {name} | {', '.join(f'{x:.2f}' for x in t)} | {statistics.median(t):.3f} "
              f"| {rss[name] / 2**20:.0f} |")
    for shape in a.shapes.split(","):
        med = lambda n: statistics.median(times[n])
        for dtype in a.dtypes.split(","):
            u, p = f"uerzoo forward {shape} {dtype}", f"UER-py {shape} {dtype}"
            print(f"{shape} {dtype}: uerzoo / UER-py = {med(u) / med(p):.3f}")
        if "int8" in a.dtypes and "f32" in a.dtypes:
            for who in ["uerzoo", "uer"]:
                f = lambda t: os.path.join(d, f"out_{who}_{shape}_{t}.safetensors")
                mn, mean = cosines(f("int8"), f("f32"))
                print(f"{shape} {who}: cosine int8 vs f32 hidden, min {mn:.6f} mean {mean:.6f}")
            mn, mean = cosines(os.path.join(d, f"out_uerzoo_{shape}_f32.safetensors"),
                               os.path.join(d, f"out_uer_{shape}_f32.safetensors"))
            print(f"{shape}: cosine uerzoo f32 vs UER-py f32 hidden, min {mn:.6f} mean {mean:.6f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--uer-py", default=os.environ.get("UER_PY", "/work/uer-py"))
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("dir")
    r = sub.add_parser("run")
    r.add_argument("--model", required=True)
    r.add_argument("--config")
    r.add_argument("--vocab")
    r.add_argument("--input", required=True)
    r.add_argument("--output", required=True)
    r.add_argument("--dtype", choices=["f32", "int8"], default="f32")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--no-logits", dest="logits", action="store_false",
                   help="the encoder only, even when the file has the MLM head")
    b = sub.add_parser("bench")
    b.add_argument("--uerzoo", default=os.path.join(ROOT, "target/release/uerzoo"))
    b.add_argument("--dir", help="model and inputs (made with `write` when absent)")
    b.add_argument("--shapes", default="8x128,32x128")
    b.add_argument("--dtypes", default="f32,int8")
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--threads", type=int, default=2)
    for s in (w, r, b):
        s.add_argument("--uer-py", default=argparse.SUPPRESS)
    a = p.parse_args()
    for k in ["uer_py", "dir", "model", "config", "vocab", "input", "output", "uerzoo"]:
        if getattr(a, k, None):
            setattr(a, k, os.path.abspath(getattr(a, k)))
    {"write": cmd_write, "run": cmd_run, "bench": cmd_bench}[a.cmd](a)


if __name__ == "__main__":
    main()
