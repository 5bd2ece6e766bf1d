//! Pretraining datasets: building instances from a corpus as UER-py's `preprocess.py` does
//! (`MlmDataset`, `LmDataset`, `BertDataset`, `AlbertDataset` of `uer/utils/dataset.py`),
//! BERT masking (`uer/utils/mask.py`), and the on-disk format, a compact memory-mapped file.
//!
//! Corpus formats: for `mlm` and `lm` one document per line; for `bert` and `albert` one
//! sentence per line with documents separated by blank lines. Instances:
//! - `mlm`: each document becomes `[CLS] tokens [SEP]` and is cut into `seq_length` windows,
//!   the remainder padded (`full_sentences`: documents concatenated first). Blank lines are
//!   skipped (UER-py would emit a `[CLS] [SEP]` instance for each).
//! - `lm`: windows of `seq_length + 1` (input and shifted target), remainder padded.
//! - `bert`: sentence pairs as Google BERT builds them (short_seq_prob 0.1, 50% random next,
//!   at most `seq_length − 3` tokens), 100 000 documents per buffer.
//! - `albert`: the same chunks of consecutive sentences, split at a random sentence into A
//!   and B, which are swapped with probability 0.5 (the sentence-order label); each document
//!   on its own (nothing is drawn from other documents). As in UER-py, a chunk of one
//!   sentence has an empty B (an empty A when swapped).
//!
//! Masking: `max(1, round(0.15·len))` positions in random order, each 80% `[MASK]`, 10% a
//! random id in `1..|V|` that is not a special token, 10% unchanged; done here
//! (`dup_factor` copies) or at training time (dynamic masking).
//!
//! The on-disk format (`.uzds`) and its checks are in [`format`]; UER-py's own
//! `dataset.pt`, read and converted into it, in [`uer_pt`]; the `preprocess` command as one
//! call in [`job`].

use super::TrainError;
use crate::progress::Progress;
use crate::tokenizer::Tokenizer;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub mod format;
pub mod job;
pub mod uer_pt;
pub use format::{
    FormatError, HEADER_LEN, Header, MAGIC, MAX_SEQ_LENGTH, PretrainTarget, Record, Specials,
};
pub use uer_pt::{FromUerOptions, UerReader, convert_uer};

/// Documents per buffer for the `bert` target (pairs draw random next sentences inside it).
pub const DOCS_BUFFER: usize = 100_000;
/// Probability of a shorter target length for `bert` pairs (UER-py `short_seq_prob`).
pub const SHORT_SEQ_PROB: f64 = 0.1;
/// Lines tokenized together (in parallel with `jobs`).
const CHUNK_LINES: usize = 4096;

/// Options of [`preprocess`] (UER-py's `preprocess.py` flags; defaults in brackets).
#[derive(Debug, Clone)]
pub struct PreprocessOptions {
    pub target: PretrainTarget,
    /// Tokens per instance [128].
    pub seq_length: usize,
    /// Copies with different static masks [5].
    pub dup_factor: usize,
    /// Mask at training time instead.
    pub dynamic_masking: bool,
    /// mlm: concatenate documents before cutting.
    pub full_sentences: bool,
    /// [7].
    pub seed: u64,
    /// Tokenizer threads [1].
    pub jobs: usize,
    /// Replace an existing output.
    pub force: bool,
}

impl Default for PreprocessOptions {
    fn default() -> Self {
        PreprocessOptions {
            target: PretrainTarget::Mlm,
            seq_length: 128,
            dup_factor: 5,
            dynamic_masking: false,
            full_sentences: false,
            seed: 7,
            jobs: 1,
            force: false,
        }
    }
}

/// What [`preprocess`] did.
#[derive(Debug, Clone)]
pub struct PreprocessReport {
    pub instances: u64,
    pub lines: u64,
    pub tokens: u64,
    pub bytes_read: u64,
    pub seconds: f64,
}

/// One instance before it is written (unpadded ids).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Instance {
    pub ids: Vec<u32>,
    /// Static masking: (position, original id).
    pub masked: Vec<(usize, u32)>,
    pub seg_a: u32,
    pub seg_b: u32,
    pub is_random_next: u32,
}

/// SHA-256 of a vocabulary (or sentencepiece model) file, as the header records it.
pub fn vocab_hash(path: &Path) -> Result<[u8; 32], TrainError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    Ok(Sha256::digest(&bytes).into())
}

fn io(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// UER-py's `mask_seq` on `ids[..len]` (the unpadded part): picks `max(1, round(0.15·len))`
/// non-special positions in random order and masks them 80/10/10. Returns
/// (position, original id) in position order.
pub fn mask_seq(
    ids: &mut [u32],
    len: usize,
    sp: &Specials,
    vocab_size: u32,
    rng: &mut impl Rng,
) -> Vec<(usize, u32)> {
    let mut candidates: Vec<usize> = (0..len)
        .filter(|&i| ![sp.cls, sp.sep, sp.pad].contains(&ids[i]))
        .collect();
    candidates.shuffle(rng);
    // Python's round() rounds halves to even.
    let num = ((len as f64 * 0.15).round_ties_even() as usize).max(1);
    let mut out = Vec::with_capacity(num);
    for &i in candidates.iter().take(num) {
        out.push((i, ids[i]));
        let p: f64 = rng.random();
        if p < 0.8 {
            ids[i] = sp.mask;
        } else if p < 0.9 && vocab_size > 5 {
            ids[i] = loop {
                let r = rng.random_range(1..vocab_size);
                if ![sp.cls, sp.sep, sp.mask, sp.pad].contains(&r) {
                    break r;
                }
            };
        }
    }
    out.sort_unstable();
    out
}

/// Writes records to a temporary file beside the output, renamed into place by
/// [`Writer::finish`].
struct Writer {
    out: BufWriter<crate::output::Partial>,
    header: Header,
    path: PathBuf,
    force: bool,
}

impl Writer {
    fn create(path: &Path, header: Header, force: bool) -> Result<Self, TrainError> {
        let dir = crate::output::parent_dir(path);
        let tmp = crate::output::Partial::new_in(dir).map_err(|e| io(dir, e))?;
        let mut out = BufWriter::new(tmp);
        out.write_all(&header.to_bytes()).map_err(|e| io(path, e))?;
        Ok(Writer {
            out,
            header,
            path: path.to_path_buf(),
            force,
        })
    }

    fn put(&mut self, ins: &Instance) -> Result<(), TrainError> {
        let h = &self.header;
        let mut rec = Vec::with_capacity(h.record_len());
        let id = |rec: &mut Vec<u8>, v: u32| {
            if h.id_bytes == 2 {
                rec.extend_from_slice(&(v as u16).to_le_bytes());
            } else {
                rec.extend_from_slice(&v.to_le_bytes());
            }
        };
        for j in 0..h.row {
            id(&mut rec, ins.ids.get(j).copied().unwrap_or(h.specials.pad));
        }
        if h.target.masks() && !h.dynamic_masking {
            let mut tgt = vec![0u32; h.row];
            for &(p, t) in &ins.masked {
                tgt[p] = t;
            }
            for t in tgt {
                id(&mut rec, t);
            }
        }
        for v in [ins.seg_a, ins.seg_b, ins.is_random_next] {
            rec.extend_from_slice(&v.to_le_bytes());
        }
        self.out.write_all(&rec).map_err(|e| io(&self.path, e))?;
        self.header.instances += 1;
        Ok(())
    }

    fn finish(self) -> Result<u64, TrainError> {
        let path = self.path.clone();
        let header = self.header.to_bytes();
        let n = self.header.instances;
        let mut tmp = self
            .out
            .into_inner()
            .map_err(|e| io(&path, e.into_error()))?;
        let f = tmp.as_file_mut();
        f.seek(SeekFrom::Start(0)).map_err(|e| io(&path, e))?;
        f.write_all(&header).map_err(|e| io(&path, e))?;
        tmp.persist(&path, self.force)
            .map_err(|e| io(&path, e.into()))?;
        Ok(n)
    }
}

/// Reads `path` in chunks of lines, tokenizing each chunk on `jobs` threads; `f` sees the
/// 1-based line number and the ids of each line (`None` for a blank line).
fn for_each_line(
    path: &Path,
    tok: &Tokenizer,
    pool: &rayon::ThreadPool,
    progress: &dyn Progress,
    stats: &mut PreprocessReport,
    f: &mut dyn FnMut(Option<Vec<u32>>) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let file = File::open(path).map_err(|e| io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line_no = 0u64;
    loop {
        let mut lines = Vec::with_capacity(CHUNK_LINES);
        let mut buf = Vec::new();
        while lines.len() < CHUNK_LINES {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| io(path, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            stats.bytes_read += n as u64;
            progress.advance(n as u64);
            let text =
                String::from_utf8(std::mem::take(&mut buf)).map_err(|_| TrainError::Data {
                    path: path.to_path_buf(),
                    line: line_no as usize,
                    message: "not UTF-8; the corpus must be UTF-8 text".into(),
                })?;
            lines.push(text);
        }
        if lines.is_empty() {
            return Ok(());
        }
        stats.lines += lines.len() as u64;
        let ids: Vec<Option<Vec<u32>>> = pool.install(|| {
            lines
                .par_iter()
                .map(|l| {
                    let t = l.trim();
                    (!t.is_empty()).then(|| tok.encode(t))
                })
                .collect()
        });
        for doc in ids {
            stats.tokens += doc.as_ref().map_or(0, |d| d.len() as u64);
            f(doc)?;
        }
    }
}

/// Builds a dataset from `corpus` with `tok` (whose vocabulary file is `vocab_file`) into
/// `output`, written atomically.
pub fn preprocess(
    corpus: &Path,
    tok: &Tokenizer,
    vocab_file: &Path,
    output: &Path,
    opts: &PreprocessOptions,
    progress: &dyn Progress,
) -> Result<PreprocessReport, TrainError> {
    let start = std::time::Instant::now();
    let min = if opts.target.pairs() { 4 } else { 2 };
    if opts.seq_length < min {
        return Err(TrainError::Options(format!(
            "--seq-length {} is too short for target {}; use at least {min}",
            opts.seq_length, opts.target
        )));
    }
    if opts.seq_length > MAX_SEQ_LENGTH {
        return Err(TrainError::Options(format!(
            "--seq-length {} is beyond {MAX_SEQ_LENGTH}",
            opts.seq_length
        )));
    }
    if opts.dup_factor == 0 {
        return Err(TrainError::Options(
            "--dup-factor must be at least 1".into(),
        ));
    }
    let out_err = |e: crate::output::OutputError| TrainError::Options(e.to_string());
    crate::output::check_not_input(output, corpus, "--corpus").map_err(out_err)?;
    crate::output::check_not_input(output, vocab_file, "--vocab").map_err(out_err)?;
    crate::output::check_file(output, opts.force).map_err(out_err)?;
    let ids = tok.special_ids();
    let specials = Specials {
        cls: ids.cls,
        sep: ids.sep,
        mask: ids.mask,
        pad: ids.pad,
    };
    let vocab_size = tok.vocab_size();
    let row = opts.seq_length + usize::from(opts.target == PretrainTarget::Lm);
    let header = Header {
        target: opts.target,
        dynamic_masking: opts.dynamic_masking,
        id_bytes: if vocab_size <= 1 << 16 { 2 } else { 4 },
        seq_length: opts.seq_length,
        row,
        vocab_size,
        instances: 0,
        vocab_sha256: vocab_hash(vocab_file)?,
        seed: opts.seed,
        dup_factor: opts.dup_factor as u32,
        specials,
    };
    let size = std::fs::metadata(corpus).map_err(|e| io(corpus, e))?.len();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .map_err(|e| TrainError::Options(format!("--jobs: {e}")))?;
    let passes = if opts.target == PretrainTarget::Lm {
        1
    } else {
        opts.dup_factor
    };
    progress.start("preprocess", size * passes as u64);
    let mut writer = Writer::create(output, header, opts.force)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut stats = PreprocessReport {
        instances: 0,
        lines: 0,
        tokens: 0,
        bytes_read: 0,
        seconds: 0.0,
    };
    let mut builder = Builder {
        opts,
        specials,
        vocab_size: vocab_size as u32,
        rng: &mut rng,
        buffer: Vec::new(),
        docs: Vec::new(),
        document: Vec::new(),
    };
    for _ in 0..passes {
        let mut emit = |ins: Instance| writer.put(&ins);
        for_each_line(corpus, tok, &pool, progress, &mut stats, &mut |doc| {
            builder.line(doc, &mut emit)
        })?;
        builder.flush(&mut emit)?;
    }
    progress.finish();
    let lines_per_pass = stats.lines / passes as u64;
    let tokens_per_pass = stats.tokens / passes as u64;
    if writer.header.instances == 0 {
        return Err(TrainError::Dataset {
            path: corpus.to_path_buf(),
            message: "no instances: the corpus is empty (or only blank lines)".into(),
        });
    }
    stats.instances = writer.finish()?;
    stats.lines = lines_per_pass;
    stats.tokens = tokens_per_pass;
    stats.seconds = start.elapsed().as_secs_f64();
    Ok(stats)
}

/// Turns documents into instances for one target.
struct Builder<'a> {
    opts: &'a PreprocessOptions,
    specials: Specials,
    vocab_size: u32,
    rng: &'a mut ChaCha8Rng,
    /// mlm full_sentences: documents not yet cut.
    buffer: Vec<Vec<u32>>,
    /// bert: documents of the buffer.
    docs: Vec<Vec<Vec<u32>>>,
    /// bert, albert: sentences of the current document.
    document: Vec<Vec<u32>>,
}

type Emit<'e> = dyn FnMut(Instance) -> Result<(), TrainError> + 'e;

impl Builder<'_> {
    fn line(&mut self, doc: Option<Vec<u32>>, emit: &mut Emit<'_>) -> Result<(), TrainError> {
        let sp = self.specials;
        match self.opts.target {
            PretrainTarget::Bert => match doc {
                Some(s) if !s.is_empty() => self.document.push(s),
                Some(_) => {}
                None => {
                    if !self.document.is_empty() {
                        self.docs.push(std::mem::take(&mut self.document));
                    }
                    if self.docs.len() >= DOCS_BUFFER {
                        self.bert_buffer(emit)?;
                    }
                }
            },
            PretrainTarget::Albert => match doc {
                Some(s) if !s.is_empty() => self.document.push(s),
                Some(_) => {}
                None => self.albert_document(emit)?,
            },
            PretrainTarget::Mlm | PretrainTarget::Lm => {
                let Some(ids) = doc else { return Ok(()) };
                let mut d = Vec::with_capacity(ids.len() + 2);
                d.push(sp.cls);
                d.extend(ids);
                d.push(sp.sep);
                if self.opts.target == PretrainTarget::Lm {
                    self.windows(&d, self.opts.seq_length + 1, emit)?;
                } else if self.opts.full_sentences {
                    self.buffer.push(d);
                    if self.buffer.len() >= DOCS_BUFFER {
                        self.flush(emit)?;
                    }
                } else {
                    self.windows(&d, self.opts.seq_length, emit)?;
                }
            }
        }
        Ok(())
    }

    /// End of a pass: what is buffered becomes instances.
    fn flush(&mut self, emit: &mut Emit<'_>) -> Result<(), TrainError> {
        match self.opts.target {
            PretrainTarget::Bert => {
                if !self.document.is_empty() {
                    self.docs.push(std::mem::take(&mut self.document));
                }
                self.bert_buffer(emit)
            }
            PretrainTarget::Albert => self.albert_document(emit),
            PretrainTarget::Mlm if !self.buffer.is_empty() => {
                let all: Vec<u32> = std::mem::take(&mut self.buffer).concat();
                self.windows(&all, self.opts.seq_length, emit)
            }
            _ => Ok(()),
        }
    }

    /// Cuts `doc` into windows of `w` tokens, the remainder kept (padded on write).
    fn windows(&mut self, doc: &[u32], w: usize, emit: &mut Emit<'_>) -> Result<(), TrainError> {
        for chunk in doc.chunks(w) {
            let mut ins = Instance {
                ids: chunk.to_vec(),
                seg_a: chunk.len() as u32,
                ..Default::default()
            };
            if self.opts.target == PretrainTarget::Lm && chunk.len() == w {
                ins.seg_a = (w - 1) as u32;
            }
            self.mask(&mut ins);
            emit(ins)?;
        }
        Ok(())
    }

    fn mask(&mut self, ins: &mut Instance) {
        if self.opts.target.masks() && !self.opts.dynamic_masking {
            let len = ins.ids.len();
            ins.masked = mask_seq(&mut ins.ids, len, &self.specials, self.vocab_size, self.rng);
        }
    }

    /// Google BERT's pairs over the buffered documents (UER-py `BertDataset`).
    fn bert_buffer(&mut self, emit: &mut Emit<'_>) -> Result<(), TrainError> {
        let docs = std::mem::take(&mut self.docs);
        for di in 0..docs.len() {
            for ins in self.bert_doc(&docs, di) {
                emit(ins)?;
            }
        }
        Ok(())
    }

    fn bert_doc(&mut self, docs: &[Vec<Vec<u32>>], di: usize) -> Vec<Instance> {
        let document = &docs[di];
        let target_len = self.target_len();
        let mut out = Vec::new();
        let (mut chunk, mut cur_len, mut i) = (Vec::<&Vec<u32>>::new(), 0usize, 0usize);
        while i < document.len() {
            chunk.push(&document[i]);
            cur_len += document[i].len();
            if i == document.len() - 1 || cur_len >= target_len {
                let a_end = if chunk.len() >= 2 {
                    self.rng.random_range(1..chunk.len())
                } else {
                    1
                };
                let a: Vec<u32> = chunk[..a_end]
                    .iter()
                    .flat_map(|s| s.iter())
                    .copied()
                    .collect();
                let mut b = Vec::new();
                let random_next = chunk.len() == 1 || self.rng.random::<f64>() < 0.5;
                if random_next {
                    let target_b = target_len.saturating_sub(a.len());
                    let mut rdi = di;
                    for _ in 0..10 {
                        rdi = self.rng.random_range(0..docs.len());
                        if rdi != di {
                            break;
                        }
                    }
                    let rdoc = &docs[rdi];
                    let start = self.rng.random_range(0..rdoc.len());
                    for s in &rdoc[start..] {
                        b.extend_from_slice(s);
                        if b.len() >= target_b {
                            break;
                        }
                    }
                    i -= chunk.len() - a_end;
                } else {
                    b = chunk[a_end..]
                        .iter()
                        .flat_map(|s| s.iter())
                        .copied()
                        .collect();
                }
                out.push(self.pair(&a, &b, random_next as u32));
                chunk.clear();
                cur_len = 0;
            }
            i += 1;
        }
        out
    }

    /// The chunk length `bert` and `albert` aim at: `seq_length − 3`, or with probability
    /// [`SHORT_SEQ_PROB`] a random length from 2.
    fn target_len(&mut self) -> usize {
        let max_tokens = self.opts.seq_length - 3;
        if self.rng.random::<f64>() < SHORT_SEQ_PROB {
            self.rng.random_range(2..=max_tokens.max(2))
        } else {
            max_tokens
        }
    }

    /// UER-py `AlbertDataset`: the current document's chunks of consecutive sentences, each
    /// split at a random sentence into A and B, swapped with probability 0.5 (label 1).
    fn albert_document(&mut self, emit: &mut Emit<'_>) -> Result<(), TrainError> {
        let document = std::mem::take(&mut self.document);
        if document.is_empty() {
            return Ok(());
        }
        let target_len = self.target_len();
        let (mut chunk, mut cur_len) = (Vec::<&[u32]>::new(), 0usize);
        for (i, sentence) in document.iter().enumerate() {
            chunk.push(sentence);
            cur_len += sentence.len();
            if i == document.len() - 1 || cur_len >= target_len {
                let a_end = if chunk.len() >= 2 {
                    self.rng.random_range(1..chunk.len())
                } else {
                    1
                };
                let a: Vec<u32> = chunk[..a_end].concat();
                let b: Vec<u32> = chunk[a_end..].concat();
                let swapped = self.rng.random::<f64>() < 0.5;
                let ins = if swapped {
                    self.pair(&b, &a, 1)
                } else {
                    self.pair(&a, &b, 0)
                };
                emit(ins)?;
                chunk.clear();
                cur_len = 0;
            }
        }
        Ok(())
    }

    /// `[CLS] a [SEP] b [SEP]`, truncated to `seq_length − 3` tokens as UER-py's
    /// `truncate_seq_pair` does, masked unless masking is dynamic.
    fn pair(&mut self, a: &[u32], b: &[u32], label: u32) -> Instance {
        let sp = self.specials;
        let max_tokens = self.opts.seq_length - 3;
        // UER-py's truncate_seq_pair: one token at a time off the longer side, from the
        // front or the back at random. Kept as index ranges (same draws), so a 5 MB line
        // costs linear time, not a Vec::remove(0) per token.
        let (mut ra, mut rb) = (0..a.len(), 0..b.len());
        while ra.len() + rb.len() > max_tokens {
            let t = if ra.len() > rb.len() {
                &mut ra
            } else {
                &mut rb
            };
            if self.rng.random::<f64>() < 0.5 {
                t.start += 1;
            } else {
                t.end -= 1;
            }
        }
        let mut ids = Vec::with_capacity(ra.len() + rb.len() + 3);
        ids.push(sp.cls);
        ids.extend_from_slice(&a[ra]);
        ids.push(sp.sep);
        let seg_a = ids.len() as u32;
        ids.extend_from_slice(&b[rb]);
        ids.push(sp.sep);
        let mut ins = Instance {
            seg_a,
            seg_b: ids.len() as u32,
            ids,
            is_random_next: label,
            ..Default::default()
        };
        self.mask(&mut ins);
        ins
    }
}

/// A dataset file, memory-mapped.
pub struct DatasetFile {
    pub header: Header,
    pub path: PathBuf,
    map: memmap2::Mmap,
}

impl DatasetFile {
    /// Opens and checks a dataset file.
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        let file = File::open(path).map_err(|e| io(path, e))?;
        // SAFETY: the file is opened read-only and only read; datasets are not modified
        // while training reads them.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io(path, e))?;
        let bad = |e: FormatError| TrainError::Dataset {
            path: path.to_path_buf(),
            message: e.0,
        };
        if uer_pt::looks_like_uer(&map) {
            return Err(TrainError::Dataset {
                path: path.to_path_buf(),
                message: format!(
                    "this is UER-py's own dataset.pt (pickled instances), not a uerzoo dataset; convert it once with `uerzoo preprocess --from-uer {} --vocab <the vocab.txt given to preprocess.py> --target <its target> --output dataset.uzds` and pretrain on that",
                    path.display()
                ),
            });
        }
        let header = Header::parse(&map).map_err(bad)?;
        header.check_len(map.len() as u64).map_err(bad)?;
        let ds = DatasetFile {
            header,
            path: path.to_path_buf(),
            map,
        };
        ds.validate()?;
        Ok(ds)
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.header.instances as usize
    }

    /// Whether there are no instances.
    pub fn is_empty(&self) -> bool {
        self.header.instances == 0
    }

    /// SHA-256 of the whole file (header and records): what the nodes of a multi-node run
    /// compare before training (about 2 s per GB).
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.map[..]).into()
    }

    /// Checks every record field by field (ids inside the vocabulary, segment ends inside
    /// the row), in parallel: a corrupt file is refused on open, before any training, with
    /// the instance and byte offset of the first bad field.
    fn validate(&self) -> Result<(), TrainError> {
        (0..self.len())
            .into_par_iter()
            .with_min_len(4096)
            .try_for_each(|i| self.get(i).map(drop))
    }

    /// Instance `i` (< [`Self::len`]), checked field by field: an id outside the
    /// vocabulary or a segment end past the row is an error naming the byte offset.
    pub fn get(&self, i: usize) -> Result<Record, TrainError> {
        let rl = self.header.record_len();
        let start = HEADER_LEN + i * rl;
        let rec = self.map.get(start..start + rl).unwrap_or(&[]);
        Record::parse(&self.header, i, start, rec).map_err(|e| TrainError::Dataset {
            path: self.path.clone(),
            message: e.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_counts_and_skips_specials() {
        let sp = Specials {
            cls: 101,
            sep: 102,
            mask: 103,
            pad: 0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for len in [3usize, 10, 30, 100, 128] {
            let mut ids: Vec<u32> = (0..len as u32).map(|i| 200 + i).collect();
            ids[0] = sp.cls;
            ids[len - 1] = sp.sep;
            let orig = ids.clone();
            let m = mask_seq(&mut ids, len, &sp, 3000, &mut rng);
            let want = ((len as f64 * 0.15).round_ties_even() as usize).max(1);
            assert_eq!(m.len(), want.min(len - 2), "len {len}");
            assert!(m.iter().all(|&(p, t)| p > 0 && p < len - 1 && orig[p] == t));
            for (i, (&a, &b)) in ids.iter().zip(&orig).enumerate() {
                if a != b {
                    assert!(m.iter().any(|&(p, _)| p == i));
                }
            }
        }
        // Python rounds 4.5 to 4.
        assert_eq!((30.0f64 * 0.15).round_ties_even(), 4.0);
    }

    #[test]
    fn header_round_trips() {
        let h = Header {
            target: PretrainTarget::Bert,
            dynamic_masking: false,
            id_bytes: 2,
            seq_length: 128,
            row: 128,
            vocab_size: 21128,
            instances: 42,
            vocab_sha256: [7; 32],
            seed: 9,
            dup_factor: 5,
            specials: Specials {
                cls: 101,
                sep: 102,
                mask: 103,
                pad: 0,
            },
        };
        assert_eq!(Header::parse(&h.to_bytes()).unwrap(), h);
        assert_eq!(h.record_len(), 2 * 128 * 2 + 12);
        let albert = Header {
            target: PretrainTarget::Albert,
            ..h.clone()
        };
        let bytes = albert.to_bytes();
        assert_eq!(bytes[12], 3);
        assert_eq!(Header::parse(&bytes).unwrap(), albert);
        assert_eq!(albert.record_len(), h.record_len());
        assert_eq!(
            "albert".parse::<PretrainTarget>(),
            Ok(PretrainTarget::Albert)
        );
        assert_eq!(PretrainTarget::Albert.to_string(), "albert");
    }

    #[test]
    fn albert_chunks_stay_in_their_document_and_swap_about_half() {
        let opts = PreprocessOptions {
            target: PretrainTarget::Albert,
            seq_length: 16,
            dynamic_masking: true,
            ..Default::default()
        };
        let specials = Specials {
            cls: 1,
            sep: 2,
            mask: 3,
            pad: 0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut builder = Builder {
            opts: &opts,
            specials,
            vocab_size: 1000,
            rng: &mut rng,
            buffer: Vec::new(),
            docs: Vec::new(),
            document: Vec::new(),
        };
        // 200 documents of 3..=6 sentences of 3 tokens; a token names its document.
        let mut out = Vec::new();
        let mut emit = |ins: Instance| {
            out.push(ins);
            Ok(())
        };
        for d in 0..200u32 {
            for s in 0..3 + d % 4 {
                let base = 10 + d * 4;
                builder
                    .line(Some(vec![base, base + 1, base + s % 2]), &mut emit)
                    .unwrap();
            }
            builder.line(None, &mut emit).unwrap();
        }
        builder.flush(&mut emit).unwrap();
        assert!(out.len() >= 200, "{}", out.len());
        let mut swapped = 0;
        for ins in &out {
            let (a, b) = (ins.seg_a as usize, ins.seg_b as usize);
            assert_eq!(b, ins.ids.len());
            assert!(b <= 16);
            assert_eq!((ins.ids[0], ins.ids[a - 1], ins.ids[b - 1]), (1, 2, 2));
            let doc: Vec<u32> = ins.ids[1..b - 1]
                .iter()
                .filter(|&&t| t != 2)
                .map(|t| (t - 10) / 4)
                .collect();
            assert!(doc.windows(2).all(|w| w[0] == w[1]), "{:?}", ins.ids);
            assert!(ins.masked.is_empty());
            swapped += ins.is_random_next;
        }
        let frac = swapped as f64 / out.len() as f64;
        assert!((0.4..0.6).contains(&frac), "{frac}");
    }
}
