#!/usr/bin/env python3
"""Closed-loop load on an OpenAI-style server: `uerzoo serve`, or the transformers peer
beside this file (serve_peer.py). Standard library only.

Each of --clients threads sends one request, waits for the whole answer, sends the next, for
--seconds. Embeddings: one Chinese sentence of 10-60 characters a request. Completions:
streamed (`stream: true`), --max-tokens new tokens, tokens counted from the events.
Prints requests/s, p50/p99 latency, errors and (completions) tokens/s and time to first
token (the first event with text, read as it streams) p50/p99 as one JSON line.

Example (uerzoo serve roberta=tests/fixtures/fixtures/uer/roberta_v1 --port 8080):
  python3 bench/serve_load.py --url http://127.0.0.1:8080 --model roberta --route embeddings
  python3 bench/serve_load.py --url http://127.0.0.1:8080 --model gpt2 --route completions --clients 4
"""

import argparse
import http.client
import json
import random
import statistics
import threading
import time
import urllib.parse

CHARS = "北京是中国的首都今天天气很好春风得意马蹄疾白日依山尽黄河入海流欲穷千里目更上一层楼明月松间照清泉石上流"


def sentence(rng):
    return "".join(rng.choice(CHARS) for _ in range(rng.randint(10, 60)))


def worker(args, stop, out, seed):
    rng = random.Random(seed)
    url = urllib.parse.urlparse(args.url)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
    lat, ttft, errors, tokens = [], [], 0, 0
    while not stop.is_set():
        if args.route == "embeddings":
            body = {"model": args.model, "input": sentence(rng)}
        else:
            body = {"model": args.model, "prompt": sentence(rng)[:8], "stream": True,
                    "max_tokens": args.max_tokens, "seed": rng.randint(0, 1 << 30)}
        start = time.perf_counter()
        try:
            conn.request("POST", f"/v1/{args.route}", json.dumps(body),
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            if r.status != 200:
                r.read()
                errors += 1
                continue
            if args.route == "completions":
                # Read the stream as it comes: the first event with text is the first token.
                first = None
                for line in iter(r.readline, b""):
                    if line.startswith(b"data: {"):
                        ev = json.loads(line[6:])
                        if ev.get("choices") and ev["choices"][0].get("text"):
                            tokens += 1
                            if first is None:
                                first = time.perf_counter() - start
                if first is not None:
                    ttft.append(first)
            else:
                r.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
            continue
        lat.append(time.perf_counter() - start)
    out.append((lat, errors, tokens, ttft))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--model", required=True)
    p.add_argument("--route", choices=["embeddings", "completions"], default="embeddings")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--max-tokens", type=int, default=32)
    args = p.parse_args()
    stop, out = threading.Event(), []
    threads = [threading.Thread(target=worker, args=(args, stop, out, i)) for i in range(args.clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(args.seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = sorted(x for l, _, _, _ in out for x in l)
    ttft = sorted(x for _, _, _, f in out for x in f)
    errors = sum(e for _, e, _, _ in out)
    tokens = sum(t for _, _, t, _ in out)

    def quantile(xs, f):
        return round(xs[min(len(xs) - 1, int(f * len(xs)))] * 1000, 1) if xs else None

    q = lambda f: quantile(lat, f)
    print(json.dumps({
        "route": args.route, "clients": args.clients, "seconds": round(wall, 1),
        "requests": len(lat), "requests_per_s": round(len(lat) / wall, 1),
        "p50_ms": q(0.5) and round(q(0.5), 1), "p99_ms": q(0.99) and round(q(0.99), 1),
        "mean_ms": round(statistics.mean(lat) * 1000, 1) if lat else None,
        "errors": errors,
        **({"tokens_per_s": round(tokens / wall, 1), "ttft_p50_ms": quantile(ttft, 0.5),
            "ttft_p99_ms": quantile(ttft, 0.99)} if args.route == "completions" else {}),
    }))


if __name__ == "__main__":
    main()
