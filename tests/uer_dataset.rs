//! UER-py's own `dataset.pt`: every fixture decodes to exactly the instances Python's pickle
//! reads (`*_instances.jsonl`), converts into `.uzds` record for record, and pretrains
//! (`preprocess --from-uer`, then `pretrain`) with the loss falling; a hostile pickle, another
//! vocabulary, another target and too few positions are refused; reading holds one instance
//! at a time whatever the file's length.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use uerzoo::progress::NoProgress;
use uerzoo::tokenizer::{Tokenizer, TokenizerOptions};
use uerzoo::train::dataset::{self, DatasetFile, FromUerOptions, PretrainTarget, UerReader};

/// The most bytes the reader may hold at once in the streaming test: a read chunk (64 KiB)
/// and one instance of a few hundred bytes, far below the 20 MB file.
const MAX_READER_BYTES: usize = 256 << 10;

fn dir() -> PathBuf {
    common::shared().join("fixtures").join("uer_dataset")
}

/// The project's own hostile fixture (not part of `../shared`).
fn hostile() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fixtures/uer_dataset/hostile_dataset.pt")
}

/// The fixtures' names (`<name>_dataset.pt`), sorted.
fn names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix("_dataset.pt").map(String::from)
        })
        .filter(|n| n != "hostile")
        .collect();
    v.sort();
    v
}

fn instances(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir().join(format!("{name}_instances.jsonl"))).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The target and tokenizer (with its file) each fixture was made with.
fn made_with(name: &str) -> (PretrainTarget, Tokenizer, PathBuf) {
    let target = match name {
        "lm" => PretrainTarget::Lm,
        "bert" => PretrainTarget::Bert,
        _ => PretrainTarget::Mlm,
    };
    if name.contains("spm") {
        let m = common::vocab("cluecorpussmall_spm.model");
        (target, Tokenizer::from_spm_file(&m).unwrap(), m)
    } else {
        let v = common::vocab("google_zh_vocab.txt");
        let tok = Tokenizer::from_vocab_file(&v, TokenizerOptions::uer()).unwrap();
        (target, tok, v)
    }
}

#[test]
fn every_fixture_decodes_to_its_instances() {
    let names = names();
    assert!(names.len() >= 5, "{names:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("summary.json")).unwrap())
            .unwrap();
    for name in &names {
        let want = instances(name);
        let got: Vec<serde_json::Value> =
            UerReader::open(&dir().join(format!("{name}_dataset.pt")))
                .unwrap()
                .map(|r| r.unwrap().to_json())
                .collect();
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{name}: instance {i}");
        }
        assert_eq!(
            summary[name.as_str()]["instances"].as_u64(),
            Some(got.len() as u64),
            "{name}"
        );
    }
}

/// Every instance of every fixture, converted, reads back as the same record.
#[test]
fn conversion_keeps_every_instance() {
    let out = tempfile::tempdir().unwrap();
    for name in names() {
        let (target, tok, vocab) = made_with(&name);
        let ds = out.path().join(format!("{name}.uzds"));
        let opts = FromUerOptions {
            target,
            seq_length: None,
            force: false,
        };
        let pt = dir().join(format!("{name}_dataset.pt"));
        let r = dataset::convert_uer(&pt, &tok, &vocab, &ds, &opts, &NoProgress).unwrap();
        let file = DatasetFile::open(&ds).unwrap();
        let want = instances(&name);
        assert_eq!(r.instances as usize, want.len());
        assert_eq!(file.len(), want.len());
        let h = &file.header;
        assert_eq!(h.target, target);
        assert_eq!(h.seq_length, 64, "{name}");
        assert_eq!(h.vocab_size, tok.vocab_size());
        let ints = |v: &serde_json::Value| -> Vec<u32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        };
        for (i, w) in want.iter().enumerate() {
            let rec = file.get(i).unwrap();
            let w = w.as_array().unwrap();
            let mut src = ints(&w[0]);
            src.resize(h.row, h.specials.pad);
            assert_eq!(rec.ids, src, "{name}: instance {i}");
            let seg = w.last().unwrap();
            let seg: Vec<u32> = match seg.as_u64() {
                Some(n) => vec![n as u32],
                None => ints(seg),
            };
            assert_eq!(rec.seg_a, seg[0], "{name}: instance {i}");
            assert_eq!(rec.seg_b, seg.get(1).copied().unwrap_or(0));
            let static_mask = w.len() == 3 && w[1].is_array() || w.len() == 4;
            assert_eq!(
                h.dynamic_masking,
                !static_mask && target != PretrainTarget::Lm
            );
            if static_mask {
                let mut t = vec![0u32; h.row];
                for pair in w[1].as_array().unwrap() {
                    let p = ints(pair);
                    t[p[0] as usize] = p[1];
                }
                assert_eq!(rec.targets.as_ref(), Some(&t), "{name}: instance {i}");
            }
            if target == PretrainTarget::Bert {
                assert_eq!(rec.is_random_next as u64, w[2].as_u64().unwrap());
            }
        }
    }
}

fn uerzoo(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let o = Command::new(common::uerzoo_bin())
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// `uerzoo preprocess --from-uer` of fixture `name`.
fn convert_cli(name: &str, target: &str, out: &Path) -> (bool, String) {
    uerzoo(&[
        os("preprocess"),
        os("--from-uer"),
        dir().join(format!("{name}_dataset.pt")).as_os_str(),
        os("--vocab"),
        common::vocab("google_zh_vocab.txt").as_os_str(),
        os("--target"),
        os(target),
        os("--output"),
        out.as_os_str(),
    ])
}

/// UER-py's `AlbertDataset` pickles `(src, tgt_mlm, is_wrong_order, seg_pos)`, the shape of
/// a bert instance with the sentence-order label in `is_next`'s place: the bert fixture read
/// with `--target albert` keeps every label and segment end.
#[test]
fn an_albert_shaped_dataset_converts_with_target_albert() {
    let out = tempfile::tempdir().unwrap();
    let ds = out.path().join("albert.uzds");
    let (ok, text) = convert_cli("bert", "albert", &ds);
    assert!(ok, "{text}");
    let file = DatasetFile::open(&ds).unwrap();
    assert_eq!(file.header.target, PretrainTarget::Albert);
    let want = instances("bert");
    assert_eq!(file.len(), want.len());
    for (i, w) in want.iter().enumerate() {
        let rec = file.get(i).unwrap();
        let w = w.as_array().unwrap();
        assert_eq!(rec.is_random_next as u64, w[2].as_u64().unwrap(), "{i}");
        let seg = w[3].as_array().unwrap();
        assert_eq!(rec.seg_a as u64, seg[0].as_u64().unwrap(), "{i}");
        assert_eq!(rec.seg_b as u64, seg[1].as_u64().unwrap(), "{i}");
    }
    // An mlm dataset is not an albert one.
    let (ok, text) = convert_cli("mlm", "albert", &out.path().join("no.uzds"));
    assert!(!ok);
    assert!(text.contains("not a `--target albert` instance"), "{text}");
}

/// `uerzoo pretrain` from scratch with `config` (a fixture's architecture) on `ds`: 20
/// steps of batch 4, a report each step. Returns the losses.
fn pretrain_cli(config: &Path, ds: &Path, target: &str, out: &Path) -> Result<Vec<f64>, String> {
    let (ok, text) = uerzoo(&[
        os("pretrain"),
        os("--config"),
        config.as_os_str(),
        os("--vocab"),
        common::vocab("google_zh_vocab.txt").as_os_str(),
        os("--dataset"),
        ds.as_os_str(),
        os("--target"),
        os(target),
        os("--total-steps"),
        os("20"),
        os("--batch-size"),
        os("4"),
        os("--report-steps"),
        os("1"),
        os("--learning-rate"),
        os("1e-3"),
        os("--warmup"),
        os("0"),
        os("--output"),
        out.as_os_str(),
    ]);
    if !ok {
        return Err(text);
    }
    Ok(text
        .lines()
        .filter_map(|l| l.split("loss").nth(1))
        .map(|l| {
            l.trim_start()
                .split('|')
                .next()
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The zoo fixtures' weights have a 3006-token vocabulary, the UER-py datasets were made
/// with `google_zh_vocab.txt` (21128): the fixtures' architectures (`uer_config.json`) are
/// pretrained from scratch on the datasets' vocabulary, and the fixtures' weights refused.
#[test]
fn pretrain_learns_on_uer_mlm_and_lm_datasets() {
    let out = tempfile::tempdir().unwrap();
    for (name, target, fixture) in [("mlm", "mlm", "roberta_v1"), ("lm", "lm", "gpt2_v1")] {
        let ds = out.path().join(format!("{name}.uzds"));
        let (ok, text) = convert_cli(name, target, &ds);
        assert!(ok && text.contains("instances"), "{text}");
        let config = common::uer_fixture(fixture).join("uer_config.json");
        let o = out.path().join(name).join("o.bin");
        let losses = pretrain_cli(&config, &ds, target, &o).unwrap();
        assert_eq!(losses.len(), 20, "{losses:?}");
        assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
        assert!(
            mean(&losses[15..]) < mean(&losses[..5]) - 0.5,
            "{name}: loss does not fall: {losses:?}"
        );
        assert!(o.is_file());
        // The fixture's own weights (3006 tokens) do not fit the dataset's ids.
        let (ok, text) = uerzoo(&[
            os("pretrain"),
            os("--model"),
            common::uer_fixture(fixture)
                .join("uer_model.bin")
                .as_os_str(),
            os("--vocab"),
            common::vocab("google_zh_vocab.txt").as_os_str(),
            os("--dataset"),
            ds.as_os_str(),
            os("--target"),
            os(target),
            os("--total-steps"),
            os("1"),
            os("--output"),
            out.path().join("refused.bin").as_os_str(),
        ]);
        assert!(
            !ok && text.contains("vocabulary of 21128 tokens, the model has 3006"),
            "{text}"
        );
    }
}

#[test]
fn bad_datasets_are_refused_with_the_fix() {
    let out = tempfile::tempdir().unwrap();
    let d = out.path();
    // Ids beyond the vocabulary given (the model's, 3006 tokens).
    let (ok, text) = uerzoo(&[
        os("preprocess"),
        os("--from-uer"),
        dir().join("mlm_dataset.pt").as_os_str(),
        os("--vocab"),
        common::uer_fixture("roberta_v1")
            .join("vocab.txt")
            .as_os_str(),
        os("--target"),
        os("mlm"),
        os("--output"),
        d.join("a.uzds").as_os_str(),
    ]);
    assert!(
        !ok && text.contains("outside the vocabulary of 3006") && text.contains("--vocab_path"),
        "{text}"
    );
    assert!(!d.join("a.uzds").exists());
    // Another target.
    let (ok, text) = convert_cli("mlm", "lm", &d.join("b.uzds"));
    assert!(
        !ok && text.contains("mlm (static masking), not a `--target lm` instance"),
        "{text}"
    );
    let (ok, text) = convert_cli("lm", "bert", &d.join("b.uzds"));
    assert!(!ok && text.contains("which is lm"), "{text}");
    // Converted for bert, pretrained as mlm: the header's target is checked.
    let ds = d.join("bert.uzds");
    assert!(convert_cli("bert", "bert", &ds).0);
    let config = common::uer_fixture("roberta_v1").join("uer_config.json");
    let err = pretrain_cli(&config, &ds, "mlm", &d.join("c.bin")).unwrap_err();
    assert!(err.contains("made for target bert, not mlm"), "{err}");
    // A model with fewer positions than the dataset's 64.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["max_seq_length"] = 32.into();
    let small = d.join("small_config.json");
    std::fs::write(&small, json.to_string()).unwrap();
    let err = pretrain_cli(&small, &ds, "bert", &d.join("c.bin")).unwrap_err();
    assert!(err.contains("beyond the model's 32 positions"), "{err}");
    // --seq-length below what preprocess.py used.
    let (ok, text) = uerzoo(&[
        os("preprocess"),
        os("--from-uer"),
        dir().join("lm_dataset.pt").as_os_str(),
        os("--vocab"),
        common::vocab("google_zh_vocab.txt").as_os_str(),
        os("--target"),
        os("lm"),
        os("--seq-length"),
        os("32"),
        os("--output"),
        d.join("e.uzds").as_os_str(),
    ]);
    assert!(
        !ok && text.contains("65 ids, more than --seq-length 32"),
        "{text}"
    );
    // pretrain on the .pt itself says how to convert it.
    let err = pretrain_cli(
        &config,
        &dir().join("mlm_dataset.pt"),
        "mlm",
        &d.join("f.bin"),
    )
    .unwrap_err();
    assert!(
        err.contains("UER-py's own dataset.pt") && err.contains("preprocess --from-uer"),
        "{err}"
    );
}

#[test]
fn hostile_pickle_is_refused_and_runs_nothing() {
    let marker = Path::new("/tmp/uerzoo_hostile_dataset_ran");
    let _ = std::fs::remove_file(marker);
    // The fixture: a valid instance, then a REDUCE of posix.system (STACK_GLOBAL).
    let mut r = UerReader::open(&hostile()).unwrap();
    assert!(r.next().unwrap().is_ok());
    let e = r.next().unwrap().unwrap_err().to_string();
    assert!(
        e.contains("instance 1")
            && e.contains("`posix.system`")
            && e.contains("nothing in it was run"),
        "{e}"
    );
    assert!(r.next().is_none());
    // Protocol 2, GLOBAL `os system`.
    let p2 = b"\x80\x02cos\nsystem\nq\x00X&\x00\x00\x00touch /tmp/uerzoo_hostile_dataset_ranq\x01\x85q\x02Rq\x03.";
    let e = UerReader::new(&p2[..])
        .next()
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(e.contains("`os.system`"), "{e}");
    // Through the CLI: refused, no output.
    let out = tempfile::tempdir().unwrap();
    let ds = out.path().join("h.uzds");
    let (ok, text) = uerzoo(&[
        os("preprocess"),
        os("--from-uer"),
        hostile().as_os_str(),
        os("--vocab"),
        common::vocab("google_zh_vocab.txt").as_os_str(),
        os("--target"),
        os("mlm"),
        os("--output"),
        ds.as_os_str(),
    ]);
    assert!(!ok && text.contains("posix.system"), "{text}");
    assert!(!ds.exists());
    assert!(!marker.exists(), "the hostile pickle ran");
}

#[test]
fn truncated_and_foreign_files_are_clear_errors() {
    let bytes = std::fs::read(dir().join("mlm_dynamic_dataset.pt")).unwrap();
    let cut = &bytes[..bytes.len() - 10];
    let all: Vec<_> = UerReader::new(cut).collect();
    let e = all.last().unwrap().as_ref().unwrap_err().to_string();
    assert!(e.contains("instance 493") && e.contains("truncated"), "{e}");
    assert_eq!(all.len(), 494);
    let e = UerReader::new(&b"UZDSET01"[..])
        .next()
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a UER-py dataset.pt"), "{e}");
    // A pickle that is not an instance tuple.
    let e = UerReader::new(&b"\x80\x04K\x01."[..])
        .next()
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a tuple"), "{e}");
}

/// ≥ 100k instances (the fixture's 494 repeated), streamed: the reader holds at most a read
/// chunk and one instance, not the 20 MB file.
#[test]
fn reading_holds_one_instance_at_a_time() {
    let bytes = std::fs::read(dir().join("mlm_dynamic_dataset.pt")).unwrap();
    let copies = 100_000usize.div_ceil(494);
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big_dataset.pt");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        for _ in 0..copies {
            f.write_all(&bytes).unwrap();
        }
    }
    let size = std::fs::metadata(&big).unwrap().len();
    let mut r = UerReader::open(&big).unwrap();
    let mut n = 0usize;
    let mut tokens = 0usize;
    for ins in r.by_ref() {
        let ins = ins.unwrap();
        let (i, _) = ins.to_instance(PretrainTarget::Mlm).unwrap();
        tokens += i.ids.len();
        n += 1;
    }
    assert_eq!(n, copies * 494);
    assert!(n >= 100_000);
    assert_eq!(tokens, n * 64);
    assert_eq!(r.offset(), size);
    assert!(
        r.peak_buffer() <= MAX_READER_BYTES && (r.peak_buffer() as u64) < size / 50,
        "the reader held {} bytes of a {size}-byte file",
        r.peak_buffer()
    );
}
