//! The text of `uerzoo info`: everything the registry knows about one weight, what the
//! local cache holds of it (listed by the caller: [`crate::jobs::zoo::info_text`] reads the
//! cache), and the uerzoo and UER-py commands that use it ([`render`]). Strings only; the
//! command line prints them.

use crate::registry::{Entry, Registry};
use std::fmt::Write;

/// What the local cache (`$HF_HUB_CACHE`) holds of an entry: Hub downloads and files put
/// there by `uerzoo import`.
#[derive(Debug, Clone)]
pub struct LocalCopies {
    pub root: std::path::PathBuf,
    pub files: Vec<crate::hub::CachedFile>,
}

/// Two-column line: `  label        value`.
fn field(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "  {label:<14}{value}");
}

/// The full `info` text of `e`: shape, tokenizer, sources, cache, pretraining, scores,
/// generation preset, notes and commands. `cache` is what the local cache holds of it.
pub fn render(registry: &Registry, e: &Entry, cache: &LocalCopies) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} — {}", e.name, e.description);
    let family = registry.family(e.family);
    let title = family.map(|f| f.title.as_str()).unwrap_or_default();
    field(&mut out, "family", format!("{} ({title})", e.family));
    field(&mut out, "aliases", e.keys()[1..].join(", "));
    field(&mut out, "architecture", shape(e));
    field(&mut out, "tokenizer", tokenizer(registry, e));
    field(&mut out, "config", format!("configs/{}", e.config));
    field(&mut out, "UER options", e.uer.to_flags());
    field(&mut out, "UER file", &e.uer_file);
    sources(&mut out, e);
    cached(&mut out, cache);
    if let Some(p) = &e.pretraining {
        let _ = writeln!(out, "\nPretraining");
        field(&mut out, "corpus", &p.corpus);
        for (i, s) in p.stages.iter().enumerate() {
            let mut text = format!("{} steps", thousands(s.steps));
            if let Some(n) = s.seq_length {
                let _ = write!(text, ", seq {n}");
            }
            if let Some(lr) = s.learning_rate {
                let _ = write!(text, ", lr {lr:e}");
            }
            if let Some(b) = s.batch_size {
                let _ = write!(text, ", batch {b}");
            }
            field(&mut out, &format!("stage {}", i + 1), text);
        }
        if let Some(note) = &p.note {
            field(&mut out, "note", note);
        }
    }
    if !e.scores.is_empty() {
        let _ = writeln!(out, "\nScores (from the model card / UER-py README)");
        let scores: Vec<String> = e
            .scores
            .iter()
            .map(|(t, s)| format!("{t} {s:.1}"))
            .collect();
        let _ = writeln!(out, "  {}", scores.join("  "));
    }
    if let Some(g) = &e.generation {
        let _ = writeln!(out, "\nGeneration preset");
        field(&mut out, "prompt", &g.format);
        field(&mut out, "template", format!("[CLS]{}", g.template));
        field(&mut out, "example", g.uer_prompt(&g.example));
        field(&mut out, "card prompt", &g.card_prompt);
        let top_p = if g.top_p == 0.0 {
            "0 (off)".to_string()
        } else {
            g.top_p.to_string()
        };
        field(
            &mut out,
            "defaults",
            format!(
                "max length {}, top-k {}, top-p {top_p}, temperature {}",
                g.max_length, g.top_k, g.temperature
            ),
        );
    }
    if !e.notes.is_empty() {
        let _ = writeln!(out, "\nNotes");
        for n in &e.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    if let Some(f) = family {
        commands(&mut out, "Use with uerzoo", &f.usage, e);
        tasks(&mut out, e, &f.usage);
        commands(
            &mut out,
            "Use with UER-py (the model zoo's commands)",
            &f.uer_py,
            e,
        );
    }
    out
}

fn shape(e: &Entry) -> String {
    if e.heads == 0 {
        return format!(
            "{}: {} layers, hidden {}, embedding {}",
            e.arch.as_str(),
            e.layers,
            e.hidden,
            e.emb_size
        );
    }
    format!(
        "{}: {} layers, hidden {}, {} heads, feed-forward {}, embedding {}, {} positions",
        e.arch.as_str(),
        e.layers,
        e.hidden,
        e.heads,
        e.feedforward,
        e.emb_size,
        e.max_seq_length
    )
}

fn tokenizer(registry: &Registry, e: &Entry) -> String {
    let file = e.tokenizer_file().unwrap_or("?");
    let Some(v) = registry.vocab(file) else {
        return file.to_string();
    };
    let mut text = format!("{file} ({}", v.kind);
    if let Some(n) = v.tokens {
        let _ = write!(text, ", {n} tokens");
    }
    if e.sources.hf.is_some() {
        let _ = write!(text, "; `{}` in the Hub repo", v.hf_file);
    }
    text.push(')');
    text
}

fn sources(out: &mut String, e: &Entry) {
    let _ = writeln!(out, "\nSources");
    if let Some(hf) = &e.sources.hf {
        field(
            out,
            "huggingface",
            format!("{} (revision {})", hf.url(), hf.revision),
        );
        field(out, "", format!("files: {}", hf.files.join(", ")));
        let mut size = format!("weights: {}", hf.weights);
        match (&hf.size, hf.size_bytes) {
            (Some(s), Some(b)) => {
                let _ = write!(size, ", {s} ({} bytes)", thousands(b));
            }
            (Some(s), None) => {
                let _ = write!(size, ", {s}");
            }
            _ => size.push_str(", size unknown"),
        }
        field(out, "", size);
        match (&hf.sha256, &hf.sha256_commit) {
            (Some(h), Some(c)) => field(out, "", format!("sha256: {h} (set by Hub commit {c})")),
            (Some(h), None) => field(out, "", format!("sha256: {h}")),
            _ => field(
                out,
                "",
                "sha256: none confirmed here (download checks the Hub's X-Linked-Etag)",
            ),
        }
        if let Some(rev) = &hf.safetensors_revision {
            field(out, "", format!("model.safetensors: revision {rev}"));
        }
    }
    if let Some(w) = &e.sources.weiyun {
        field(
            out,
            "weiyun",
            format!("{} (UER format; browser download, no checksum)", w.url),
        );
        if let Some(v) = &w.vocab_url {
            field(out, "", format!("vocabulary: {v}"));
        }
        if !w.older_urls.is_empty() {
            field(
                out,
                "",
                format!("earlier links: {}", w.older_urls.join(", ")),
            );
        }
    }
}

/// What the local cache (`$HF_HUB_CACHE`) holds for the entry: Hub downloads and files put
/// there by `uerzoo import`, with their sha256.
fn cached(out: &mut String, cache: &LocalCopies) {
    use crate::hub::Hash;
    let _ = writeln!(out, "\nLocal cache ({})", cache.root.display());
    if cache.files.is_empty() {
        field(
            out,
            "",
            "nothing cached (`uerzoo download NAME` or `uerzoo import NAME FILE`)",
        );
    }
    for f in &cache.files {
        let size = f
            .size
            .map_or("missing".to_string(), |s| format!("{} bytes", thousands(s)));
        let hash = match &f.hash {
            Some(Hash::Sha256(h)) => format!(", sha256 {h}"),
            Some(Hash::GitSha1(h)) => format!(", git sha1 {h}"),
            None => String::new(),
        };
        let commit = &f.commit[..f.commit.len().min(12)];
        let _ = writeln!(out, "  {}: {size}{hash} (snapshot {commit})", f.file);
    }
}

fn commands(out: &mut String, title: &str, cmds: &[crate::registry::Command], e: &Entry) {
    if cmds.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}");
    for c in cmds {
        let command = c.render(e);
        // A family's usage lists conversion for all its members; not every one converts.
        if command.contains("--to hf") && !e.arch.has_hf_counterpart() {
            continue;
        }
        let _ = writeln!(out, "  # {}\n  {command}", c.what);
    }
}

/// The uerzoo command of each task the weight supports, after the family's own commands
/// (`usage`, which are not repeated): generation with the weight's preset for GPT-2 and
/// UER-py 2019's GPT; prediction with the head of a classification-target weight;
/// fill-mask, features, fine-tuning and further pretraining for encoders; serving for every
/// architecture but the LSTM, whose language model lists generation, forward and features.
fn tasks(out: &mut String, e: &Entry, usage: &[crate::registry::Command]) {
    use crate::generate::preset::Preset;
    use crate::registry::Arch;
    let name = &e.name;
    if e.arch == Arch::Lstm {
        // UER-py 2019's LSTM language model: generation, forward and (mean) features run.
        if e.uer.target.parts().first() == Some(&"lm") {
            let preset = Preset::for_entry(name);
            for (what, command) in [
                (
                    format!("generate (preset `{}`: {})", preset.name, preset.about),
                    format!("uerzoo generate {name} --prompt 今天天气很好 --max-length 64"),
                ),
                (
                    "hidden states and LM logits of token ids (safetensors `input_ids`, `segment`)"
                        .into(),
                    format!(
                        "uerzoo forward {name} --input ids.safetensors --output out.safetensors"
                    ),
                ),
                (
                    "sentence features (mean pooling, as the zoo page advises for the LSTM)".into(),
                    format!(
                        "uerzoo extract-features {name} --input texts.txt --output features.safetensors --pooling mean"
                    ),
                ),
            ] {
                let _ = writeln!(out, "  # {what}\n  {command}");
            }
        }
        // The classification target (the LSTM+cls weight) predicts as it is; every LSTM
        // fine-tunes with mean pooling (UER-py 2020's README: lr 1e-3).
        let mut rows: Vec<(String, String)> = Vec::new();
        if e.uer.target.parts().contains(&"cls") {
            rows.push((
                "classify with the weight's own classification target".into(),
                format!("uerzoo predict {name} --input new.tsv --output predictions.tsv"),
            ));
        }
        rows.push((
            "fine-tune a classifier (mean pooling, as the zoo page advises for the LSTM)".into(),
            format!(
                "uerzoo finetune {name} --train train.tsv --dev dev.tsv --test test.tsv --pooling mean --learning-rate 1e-3 --output classifier.bin"
            ),
        ));
        rows.push((
            String::new(),
            "uerzoo predict classifier.bin --input new.tsv --output predictions.tsv".into(),
        ));
        for (what, command) in rows {
            if !what.is_empty() {
                let _ = writeln!(out, "  # {what}");
            }
            let _ = writeln!(out, "  {command}");
        }
        return;
    }
    let mut rows: Vec<(String, String)> = Vec::new();
    if let Some(g) = &e.generation {
        let preset = Preset::for_entry(name);
        rows.push((
            format!(
                "generate (preset `{}`, from the name: {})",
                preset.name, preset.about
            ),
            format!("uerzoo generate {name} --prompt {}", g.example),
        ));
        rows.push((
            "generate for many prompts, one a line".into(),
            format!("uerzoo generate {name} --input prompts.txt --output generated.txt"),
        ));
    }
    let target = e.uer.target.parts();
    if e.generation.is_none() && e.arch == Arch::Gpt && target.first() == Some(&"lm") {
        // UER-py 2019's GPT: no card, the entry's preset (raw: no [CLS] first).
        let preset = Preset::for_entry(name);
        rows.push((
            format!("generate (preset `{}`: {})", preset.name, preset.about),
            format!("uerzoo generate {name} --prompt 今天天气很好 --max-length 64"),
        ));
        rows.push((
            "hidden states and LM logits of token ids (safetensors `input_ids`, `segment`)".into(),
            format!("uerzoo forward {name} --input ids.safetensors --output out.safetensors"),
        ));
    }
    let encoder = matches!(e.arch, Arch::Bert | Arch::Albert);
    if encoder && target.first() == Some(&"cls") {
        rows.push((
            "label text with the weights' own classifier (UER-py 2019's classification target; TSV with `text_a`)".into(),
            format!("uerzoo predict {name} --input new.tsv --output predictions.tsv --probabilities"),
        ));
    }
    if encoder {
        if target
            .iter()
            .any(|t| matches!(*t, "mlm" | "bert" | "albert"))
        {
            rows.push((
                "fill a mask".into(),
                format!("uerzoo fill-mask {name} \"北京是[MASK]国的首都。\""),
            ));
        }
        rows.push((
            "sentence features".into(),
            format!(
                "uerzoo extract-features {name} --input texts.txt --output features.safetensors"
            ),
        ));
        rows.push((
            "fine-tune a classifier (TSV with `label` and `text_a`), then label new text".into(),
            format!(
                "uerzoo finetune {name} --train train.tsv --dev dev.tsv --test test.tsv --output classifier.bin"
            ),
        ));
        rows.push((
            String::new(),
            "uerzoo predict classifier.bin --input new.tsv --output predictions.tsv".into(),
        ));
    }
    let pretrain = ["mlm", "lm", "bert", "albert"]
        .into_iter()
        .find(|t| target.first() == Some(t));
    if let (Some(target), Some(file)) = (pretrain, e.tokenizer_file()) {
        // The vocabularies with a confirmed sha256 ship in the repository's `vocab/`.
        let shipped = Registry::builtin()
            .vocab(file)
            .is_some_and(|v| v.sha256.is_some());
        let vocab = if shipped {
            format!("vocab/{file}")
        } else {
            file.to_string()
        };
        rows.push((
            format!("further pretraining ({target} target): build the dataset, then train"),
            format!(
                "uerzoo preprocess --corpus corpus.txt --vocab {vocab} --target {target} --output corpus.uzds"
            ),
        ));
        rows.push((
            String::new(),
            format!(
                "uerzoo pretrain --model {name} --dataset corpus.uzds --target {target} --total-steps 5000 --output {name}-pretrained.bin"
            ),
        ));
    }
    rows.push((
        "serve over HTTP (docs/serve.md)".into(),
        format!("uerzoo serve {name} --port 8080"),
    ));
    let known: Vec<String> = usage.iter().map(|c| c.render(e)).collect();
    for (what, command) in rows {
        let first_word = |c: &str| c.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        if known.iter().any(|k| first_word(k) == first_word(&command)) {
            continue;
        }
        if !what.is_empty() {
            let _ = writeln!(out, "  # {what}");
        }
        let _ = writeln!(out, "  {command}");
    }
}

/// `1000000` → `1,000,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
