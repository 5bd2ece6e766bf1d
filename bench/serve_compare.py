#!/usr/bin/env python3
"""`uerzoo serve` against the transformers peer (serve_peer.py), interleaved, one command:

  python3 bench/serve_compare.py --uerzoo target/release/uerzoo

Starts both servers on the fixtures' HF directories (tests/fixtures/fixtures/uer/roberta_v1 and
gpt2_v1, `hf_by_uer_script/` with the `vocab.txt` beside it; --gpt2 DIR serves another HF GPT-2
folder with its vocab.txt, such as the 12-layer one of `serve_load --write-gpt2` converted by
`uerzoo convert --to hf`), then for --rounds rounds runs the load generator against uerzoo and
then the peer: `/v1/embeddings` with --clients closed-loop
clients for --seconds, and streamed `/v1/completions` at each of --streams concurrent streams
for --gen-seconds. Prints one markdown table of medians (and every round's JSON on stderr).
Needs torch and transformers for the peer.

The load generator: serve_load.py (--client python, the default), or the compiled
benches/serve_load.rs (--client rust, --client-bin its executable, e.g. the newest
target/release/deps/serve_load-*), whose clients share one thread and so take less of the
cores the servers run on. Both servers get the same client either way.

--baseline BIN serves a second uerzoo binary (an earlier build) beside the first, measured in the
same rounds, labelled "uerzoo serve (baseline)"; --skip peer leaves the transformers peer out
(then torch is not needed).
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIX = os.path.join(ROOT, "tests/fixtures/fixtures/uer")


def model_dir(tmp, name, hf):
    """`hf` with the fixture's vocab.txt beside config.json (what `uerzoo serve` reads)."""
    d = os.path.join(tmp, name)
    os.makedirs(d)
    for f in os.listdir(hf):
        os.symlink(os.path.join(hf, f), os.path.join(d, f))
    os.symlink(os.path.join(os.path.dirname(hf), "vocab.txt"), os.path.join(d, "vocab.txt"))
    return d


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url, proc, what, limit=300):
    end = time.time() + limit
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit(f"{what} exited ({proc.returncode}) before answering")
        try:
            urllib.request.urlopen(url + "/v1/models", timeout=2).read()
            return
        except OSError as e:
            if getattr(e, "code", None):  # an HTTP error: the server answers
                return
            time.sleep(0.5)
    sys.exit(f"{what} did not answer at {url} within {limit} s")


def start_uerzoo(a, roberta, gpt2, binary=None):
    p = subprocess.Popen([binary or a.uerzoo, "serve", f"roberta={roberta}", f"gpt2={gpt2}",
                          "--host", "127.0.0.1", "--port", "0"] + a.uerzoo_args,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        if line.startswith("listening on "):
            url = line.split()[-1]
            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
            wait_up(url, p, "uerzoo serve")
            return p, url
    sys.exit(f"uerzoo serve exited ({p.wait()}) without printing its address")


def start_peer(a, roberta, gpt2):
    port = free_port()
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "serve_peer.py"), "--encoder",
                          roberta, "--generator", gpt2, "--port", str(port),
                          "--threads", str(a.threads)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_up(url, p, "serve_peer.py")
    return p, url


def rust_client():
    """The newest built benches/serve_load.rs executable under target/release/deps."""
    deps = os.path.join(ROOT, "target/release/deps")
    found = [os.path.join(deps, f) for f in os.listdir(deps) if f.startswith("serve_load-")
             and "." not in f] if os.path.isdir(deps) else []
    found = [f for f in found if os.access(f, os.X_OK)]
    if not found:
        sys.exit("no serve_load executable in target/release/deps; build it with "
                 "`cargo build --release --bench serve_load` or pass --client-bin")
    return max(found, key=os.path.getmtime)


def load(a, url, route, clients, seconds):
    client = ([a.client_bin] if a.client == "rust"
              else [sys.executable, os.path.join(HERE, "serve_load.py")])
    out = subprocess.run(client + ["--url", url,
                          "--model", "roberta" if route == "embeddings" else "gpt2",
                          "--route", route, "--clients", str(clients), "--seconds",
                          str(seconds), "--max-tokens", str(a.max_tokens)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--uerzoo", default=os.path.join(ROOT, "target/release/uerzoo"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--streams", default="1,4,8")
    p.add_argument("--gen-seconds", type=float, default=15)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="the peer's torch threads")
    p.add_argument("--client", choices=["python", "rust"], default="python",
                   help="the load generator: serve_load.py or benches/serve_load.rs")
    p.add_argument("--client-bin", help="the built serve_load bench (--client rust)")
    p.add_argument("--gpt2", help="an HF GPT-2 folder with vocab.txt (default: the fixture's)")
    p.add_argument("--skip", default="", help="embeddings, completions and/or peer")
    p.add_argument("--baseline", help="another uerzoo binary measured in the same rounds")
    p.add_argument("uerzoo_args", nargs="*", help="more `uerzoo serve` options (after --)")
    a = p.parse_args()
    peer = "peer" not in a.skip
    if peer:
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as e:
            sys.exit(f"serve_compare.py needs torch and transformers for the peer ({e})")
    if a.baseline and not os.access(a.baseline, os.X_OK):
        sys.exit(f"--baseline {a.baseline}: not an executable")
    if a.client == "rust" and not a.client_bin:
        a.client_bin = rust_client()
    if a.client == "rust" and not os.access(a.client_bin, os.X_OK):
        sys.exit(f"--client-bin {a.client_bin}: not an executable")
    if not os.access(a.uerzoo, os.X_OK):
        sys.exit(f"no uerzoo binary at {a.uerzoo} (cargo build --release --bin uerzoo)")
    tmp = tempfile.mkdtemp(prefix="serve_compare_")
    roberta = model_dir(tmp, "roberta", os.path.join(FIX, "roberta_v1/hf_by_uer_script"))
    gpt2 = (os.path.abspath(a.gpt2) if a.gpt2
            else model_dir(tmp, "gpt2", os.path.join(FIX, "gpt2_v1/hf_by_uer_script")))
    servers = [("uerzoo serve", *start_uerzoo(a, roberta, gpt2))]
    if a.baseline:
        servers.append(("uerzoo serve (baseline)", *start_uerzoo(a, roberta, gpt2, a.baseline)))
    if peer:
        servers.append(("transformers peer", *start_peer(a, roberta, gpt2)))
    work = []
    if "embeddings" not in a.skip:
        work.append(("embeddings", a.clients, a.seconds))
    if "completions" not in a.skip:
        work += [("completions", int(n), a.gen_seconds) for n in a.streams.split(",")]
    results = {}
    print(f"client: {a.client_bin if a.client == 'rust' else 'serve_load.py'}", file=sys.stderr)
    try:
        for rnd in range(a.rounds):
            for route, clients, secs in work:
                for name, _, url in servers:
                    r = load(a, url, route, clients, secs)
                    results.setdefault((route, clients, name), []).append(r)
                    print(f"round {rnd + 1} {name}: {json.dumps(r)}", file=sys.stderr)
    finally:
        for _, proc, _ in servers:
            proc.terminate()
            proc.wait()
    med = lambda rs, k: (statistics.median(r[k] for r in rs)
                         if all(r.get(k) is not None for r in rs) else None)
    print("| route | clients | server | req/s | p50 ms | p99 ms | errors | tokens/s "
          "| TTFT p50 ms | TTFT p99 ms |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for (route, clients, name), rs in results.items():
        cells = [med(rs, k) for k in ["requests_per_s", "p50_ms", "p99_ms"]]
        cells.append(sum(r["errors"] for r in rs))
        cells += [med(rs, k) for k in ["tokens_per_s", "ttft_p50_ms", "ttft_p99_ms"]]
        print(f"| {route} | {clients} | {name} | "
              + " | ".join("–" if c is None else f"{c:g}" for c in cells) + " |")
    for route, clients, _ in work:
        u = results[(route, clients, "uerzoo serve")]
        k = "requests_per_s" if route == "embeddings" else "tokens_per_s"
        for other in ["transformers peer", "uerzoo serve (baseline)"]:
            if (route, clients, other) in results:
                t = results[(route, clients, other)]
                print(f"{route} x{clients}: uerzoo / {other} {k} = "
                      f"{med(u, k) / med(t, k):.2f}")


if __name__ == "__main__":
    main()
