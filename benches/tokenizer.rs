//! Tokenizer throughput on real text: the first 2000 lines of book_review's train.tsv (what
//! fine-tuning tokenizes) with UER-py's BERT tokenizer and the word models' sentencepiece.
//! Run: `cargo bench --bench tokenizer` (needs `../shared` or `$UERZOO_SHARED`).

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uerzoo::tokenizer::{Tokenizer, TokenizerOptions};

fn shared() -> PathBuf {
    std::env::var_os("UERZOO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn bench(c: &mut Criterion) {
    let data = shared().join("data");
    let text = std::fs::read_to_string(data.join("datasets/book_review/train.tsv")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .skip(1)
        .take(2000)
        .filter_map(|l| l.split_once('\t').map(|(_, t)| t))
        .collect();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    let bert = Tokenizer::from_vocab_file(
        data.join("vocab/google_zh_vocab.txt"),
        TokenizerOptions::uer(),
    )
    .unwrap();
    let spm = Tokenizer::from_spm_file(data.join("vocab/cluecorpussmall_spm.model")).unwrap();

    let mut group = c.benchmark_group("tokenize_2000_lines");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    group.bench_function("bert_uer", |b| {
        b.iter(|| lines.iter().map(|l| bert.encode(l).len()).sum::<usize>())
    });
    group.bench_function("spm_uer", |b| {
        b.iter(|| lines.iter().map(|l| spm.encode(l).len()).sum::<usize>())
    });
    group.finish();

    let mut load = c.benchmark_group("load");
    load.sample_size(10);
    load.bench_function("bert_vocab", |b| {
        b.iter(|| {
            Tokenizer::from_vocab_file(
                data.join("vocab/google_zh_vocab.txt"),
                TokenizerOptions::uer(),
            )
            .unwrap()
        })
    });
    load.bench_function("spm_model", |b| {
        b.iter(|| Tokenizer::from_spm_file(data.join("vocab/cluecorpussmall_spm.model")).unwrap())
    });
    load.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
