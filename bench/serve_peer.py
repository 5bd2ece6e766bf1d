#!/usr/bin/env python3
"""The transformers peer of `uerzoo serve` for bench/serve_load.py: Python's
ThreadingHTTPServer in front of transformers, the same two routes and bodies.

  /v1/embeddings   BertModel, the [CLS] state of `[CLS] text [SEP]`.
  /v1/completions  GPT2LMHeadModel.generate (top-k 70, as UER-py), streamed as server-sent
                   events one token at a time (TextIteratorStreamer).

Needs torch and transformers. Example:
  python3 bench/serve_peer.py --encoder DIR --generator DIR --port 8081
  python3 bench/serve_load.py --url http://127.0.0.1:8081 --model roberta --route embeddings
"""

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import torch
    from transformers import (BertModel, BertTokenizer, GPT2LMHeadModel,
                              TextIteratorStreamer)
except ImportError as e:
    sys.exit(f"serve_peer.py needs torch and transformers ({e}): pip install torch transformers")


def tokenizer(directory):
    """The directory's vocab.txt, else its parent's (the fixtures' `hf_by_uer_script/`)."""
    for d in (directory, os.path.dirname(os.path.abspath(directory))):
        if os.path.exists(os.path.join(d, "vocab.txt")):
            return BertTokenizer(os.path.join(d, "vocab.txt"))
    sys.exit(f"{directory}: no vocab.txt in it or beside it")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", help="an HF BERT/RoBERTa directory (embeddings)")
    p.add_argument("--generator", help="an HF GPT-2 directory with vocab.txt (completions)")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    enc = gen = None
    if args.encoder:
        enc = (tokenizer(args.encoder),
               BertModel.from_pretrained(args.encoder).eval())
    if args.generator:
        gen = (tokenizer(args.generator),
               GPT2LMHeadModel.from_pretrained(args.generator).eval())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, status, body, ctype="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/v1/embeddings" and enc:
                tok, model = enc
                texts = req["input"] if isinstance(req["input"], list) else [req["input"]]
                batch = tok(texts, padding=True, truncation=True, return_tensors="pt")
                with torch.no_grad():
                    cls = model(**batch).last_hidden_state[:, 0]
                data = [{"object": "embedding", "index": i, "embedding": v.tolist()}
                        for i, v in enumerate(cls)]
                return self.reply(200, {"object": "list", "data": data, "model": req["model"]})
            if self.path == "/v1/completions" and gen:
                tok, model = gen
                ids = tok(req["prompt"], add_special_tokens=False, return_tensors="pt").input_ids
                ids = torch.cat([torch.tensor([[tok.cls_token_id]]), ids], dim=1)
                streamer = TextIteratorStreamer(tok, skip_prompt=True)
                torch.manual_seed(req.get("seed", 0))
                kw = dict(input_ids=ids, max_new_tokens=req.get("max_tokens", 16), do_sample=True,
                          top_k=70, streamer=streamer, pad_token_id=tok.pad_token_id)
                threading.Thread(target=lambda: model.generate(**kw)).start()
                # Each token is sent as it is made: one HTTP/1.1 chunk per event.
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def send(event):
                    data = event.encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                for t in streamer:
                    if t:
                        send(f"data: {json.dumps({'choices': [{'index': 0, 'text': t}]})}\n\n")
                send("data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            self.reply(404, {"error": {"message": f"no route {self.path}"}})

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
