#!/usr/bin/env bash
# bench/gpu-check.sh — the CUDA checks and benchmarks of uerzoo, on a GPU machine, in one run.
set -uo pipefail

usage() {
  cat <<'HELP'
Usage: bench/gpu-check.sh --prepare
       bench/gpu-check.sh [--bin DIR] [--device cuda|cuda:N|wgpu|cpu] [--size base|tiny]
                          [--budget SECONDS]

Runs, on a machine with an NVIDIA GPU, what no CPU machine can check, and prints one table:
  1. the CUDA tests (`#[ignore]`d in `cargo test`): every fixture's forward against UER-py and
     transformers, greedy generation against UER-py, fine-tuning and pretraining steps against
     the CPU backend, the command line on the GPU, and data parallel over cuda:0,cuda:1 when
     two GPUs exist;
  2. benchmarks on RoBERTa-base-sized (12 x 768) and GPT-2-base-sized random models made on
     the spot by `uerzoo pretrain --config` (the GPU machine has no network and no weights):
     forward tokens/s (`extract-features`, 8 x 128 per pass), pretraining tokens/s (MLM,
     batch 8 x 128), fine-tuning examples/s (book_review_small, 1 epoch), greedy generation
     tokens/s (batch 1), each beside PyTorch on the same GPU when `python3 -c "import torch"`
     works there (bench/torch_bench.py --device cuda).

It builds nothing on the GPU machine. First, on the build machine (same OS image, CUDA
toolkit not needed: cudarc loads the driver at run time):

  bench/gpu-check.sh --prepare      # cargo build --release --features cuda, and the CUDA test
                                    # executables; copies them into target/gpu-check/

then carry target/gpu-check/ with the repository (the tests read tests/fixtures/ and vocab/)
and run `bench/gpu-check.sh` from the repository root there. Under 8 minutes on an H100;
--budget (default 420 s) stops starting new steps once spent, and the table says what was
skipped. --device cpu --size tiny runs the same steps on a laptop in a minute (to check the
script itself; its numbers mean nothing). Exit status 1 when a test failed.
HELP
}

BIN=target/gpu-check
DEVICE=cuda
SIZE=base
BUDGET=420
PREPARE=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --prepare) PREPARE=1 ;;
    --bin) BIN="$2"; shift ;;
    --device) DEVICE="$2"; shift ;;
    --size) SIZE="$2"; shift ;;
    --budget) BUDGET="$2"; shift ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$PREPARE" = 1 ]; then
  set -e
  cargo build --release --features cuda
  mkdir -p target/gpu-check
  cp target/release/uerzoo target/gpu-check/
  # The test executables, as cargo names them (`cargo test --no-run` prints their paths).
  cargo test --release --features cuda --no-run --message-format=json \
      --test backends --test forward --test pretrain 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])' \
    | while read -r name exe; do cp "$exe" "target/gpu-check/test-$name"; done
  ls -l target/gpu-check
  exit 0
fi

UERZOO="$BIN/uerzoo"
[ -x "$UERZOO" ] || { echo "gpu-check: no $UERZOO; run bench/gpu-check.sh --prepare on the build machine (see --help)" >&2; exit 2; }
[ -d tests/fixtures ] || { echo "gpu-check: run it from the repository root (tests/fixtures/ not found)" >&2; exit 2; }
START=$(date +%s)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ROWS=()
FAILED=0
row() { ROWS+=("$(printf '| %-44s | %-14s | %s |' "$1" "$2" "$3")"); }
left() { [ $(( $(date +%s) - START )) -lt "$BUDGET" ]; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2" 2>/dev/null || echo "?"; }
now() { date +%s.%N; }

echo "== machine"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$UERZOO" --version
GPUS=$(command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | wc -l || echo 0)

echo "== CUDA tests"
for t in "$BIN"/test-*; do
  [ -x "$t" ] || continue
  name=${t##*/test-}
  if ! left; then row "tests: $name" skipped "budget spent"; continue; fi
  filter=cuda
  t0=$(now)
  if timeout 300 "$t" --ignored --test-threads=1 "$filter" >"$WORK/$name.log" 2>&1; then
    result=$(grep -E "^test result" "$WORK/$name.log" | tail -1)
    row "tests: $name (cuda)" pass "${result#test result: } in $(secs "$t0" "$(now)") s"
  else
    FAILED=1
    row "tests: $name (cuda)" FAIL "see below"
    tail -40 "$WORK/$name.log"
  fi
done
[ -e "$BIN"/test-backends ] || row "tests" skipped "no test executables in $BIN (--prepare)"
[ "$GPUS" -ge 2 ] || row "tests: data parallel cuda:0,cuda:1" skipped "one GPU"

echo "== benchmarks ($SIZE, $DEVICE)"
if [ "$SIZE" = base ]; then L=12; H=768; A=12; F=3072; else L=2; H=128; A=2; F=512; fi
VOCAB=vocab/google_zh_vocab.txt
CORPUS=tests/fixtures/data/corpora/CLUECorpusSmall_sampled.txt
cat >"$WORK/bert.json" <<JSON
{"emb_size": $H, "hidden_size": $H, "feedforward_size": $F, "heads_num": $A, "layers_num": $L,
 "max_seq_length": 512, "dropout": 0.1, "hidden_act": "gelu", "embedding": "word_pos_seg",
 "encoder": "transformer", "mask": "fully_visible", "target": "mlm"}
JSON
cat >"$WORK/gpt2.json" <<JSON
{"emb_size": $H, "hidden_size": $H, "feedforward_size": $F, "heads_num": $A, "layers_num": $L,
 "max_seq_length": 1024, "dropout": 0.1, "hidden_act": "gelu_fast", "embedding": "word_pos",
 "remove_embedding_layernorm": true, "encoder": "transformer", "mask": "causal",
 "layernorm_positioning": "pre", "target": "lm", "tie_weights": true}
JSON
run() { "$UERZOO" "$@" --device "$DEVICE" >"$WORK/out.log" 2>&1; }
if left && "$UERZOO" preprocess --corpus "$CORPUS" --vocab "$VOCAB" --target mlm --seq-length 128 \
     --output "$WORK/mlm.uzds" >/dev/null 2>&1 \
   && "$UERZOO" preprocess --corpus "$CORPUS" --vocab "$VOCAB" --target lm --seq-length 128 \
     --output "$WORK/lm.uzds" >/dev/null 2>&1; then
  # Pretraining 30 steps also writes the random base model the other rows use.
  if run pretrain --config "$WORK/bert.json" --vocab "$VOCAB" --dataset "$WORK/mlm.uzds" \
       --target mlm --total-steps 30 --batch-size 8 --report-steps 10 --output "$WORK/bert.bin"; then
    row "pretrain MLM ${L}x${H}, batch 8x128" "$(grep -oE '[0-9]+ tokens/s' "$WORK/out.log" | tail -1)" "30 steps, incl. start"
  else FAILED=1; row "pretrain MLM" FAIL "$(tail -1 "$WORK/out.log")"; fi
  if left && [ -e "$WORK/bert.bin" ]; then
    head -c 2000000 "$CORPUS" | head -n 512 >"$WORK/lines.txt"
    n=$(wc -l <"$WORK/lines.txt")
    run extract-features "$WORK/bert.bin" --config "$WORK/bert.json" --vocab "$VOCAB" \
      --input "$WORK/lines.txt" --seq-length 128 --batch-size 8 --output "$WORK/warm.safetensors"
    t0=$(now)
    if run extract-features "$WORK/bert.bin" --config "$WORK/bert.json" --vocab "$VOCAB" \
         --input "$WORK/lines.txt" --seq-length 128 --batch-size 8 --output "$WORK/f.safetensors"; then
      s=$(secs "$t0" "$(now)")
      row "forward ${L}x${H}, $n lines x 128, batch 8" "$(python3 -c "print(f'{$n*128/$s:.0f} tokens/s')" 2>/dev/null)" "whole process $s s"
    else FAILED=1; row "forward" FAIL "$(tail -1 "$WORK/out.log")"; fi
  fi
  if left && [ -e "$WORK/bert.bin" ]; then
    DS=tests/fixtures/data/datasets/book_review_small
    t0=$(now)
    if run finetune "$WORK/bert.bin" --config "$WORK/bert.json" --vocab "$VOCAB" --train "$DS/train.tsv" \
         --dev "$DS/dev.tsv" --epochs 1 --batch-size 32 --seq-length 128 --output "$WORK/cls.bin"; then
      s=$(secs "$t0" "$(now)")
      n=$(( $(wc -l <"$DS/train.tsv") - 1 ))
      row "finetune ${L}x${H}, $n rows x 128, batch 32" "$(python3 -c "print(f'{$n/$s:.1f} rows/s')" 2>/dev/null)" "1 epoch, whole process $s s"
    else FAILED=1; row "finetune" FAIL "$(tail -1 "$WORK/out.log")"; fi
  fi
  if left && run pretrain --config "$WORK/gpt2.json" --vocab "$VOCAB" --dataset "$WORK/lm.uzds" \
       --target lm --total-steps 1 --batch-size 2 --output "$WORK/gpt2.bin"; then
    if run generate "$WORK/gpt2.bin" --config "$WORK/gpt2.json" --vocab "$VOCAB" --prompt "今天天气很好" \
         --max-new-tokens 128 --greedy; then
      row "generate GPT-2 ${L}x${H}, greedy, batch 1" "$(grep -oE '[0-9.]+ tokens/s' "$WORK/out.log" | tail -1)" "128 new tokens, KV cache"
    else FAILED=1; row "generate" FAIL "$(tail -1 "$WORK/out.log")"; fi
  else row "generate" skipped "budget spent or the GPT-2 model failed: $(tail -1 "$WORK/out.log")"; fi
else
  row "benchmarks" skipped "budget spent or preprocess failed"
fi

if left && python3 -c "import torch; assert torch.cuda.is_available() or '$DEVICE' == 'cpu'" 2>/dev/null; then
  tdev=cpu; case "$DEVICE" in cuda*) tdev=cuda ;; esac
  if python3 bench/torch_bench.py --config "$SIZE" --device "$tdev" --iters 5 --json >"$WORK/torch.json" 2>"$WORK/torch.err"; then
    python3 - "$WORK/torch.json" <<'PY' >"$WORK/torch.rows"
import json, sys
for key, value in json.load(open(sys.argv[1])).items():
    print(f"PyTorch {key}\t{value:.0f} tokens/s" if isinstance(value, (int, float)) else f"PyTorch {key}\t{value}")
PY
    while IFS=$'\t' read -r k v; do row "$k" "$v" "bench/torch_bench.py, same GPU"; done <"$WORK/torch.rows"
  else row "PyTorch" FAIL "$(tail -1 "$WORK/torch.err")"; fi
else
  row "PyTorch" skipped "no torch with CUDA here (or budget spent)"
fi

echo
echo "== gpu-check: $DEVICE, $SIZE, $(( $(date +%s) - START )) s"
printf '| %-44s | %-14s | %s |\n' "what" "result" "notes"
printf '|%s|%s|%s|\n' "----------------------------------------------" "----------------" "-------"
printf '%s\n' "${ROWS[@]}"
exit $FAILED
