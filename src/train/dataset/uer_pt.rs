//! UER-py's own `dataset.pt` (written by its `preprocess.py`), read instance by instance
//! and converted once into the `.uzds` format, so `uerzoo pretrain` trains on it with all
//! of its checks (vocabulary hash, target, positions).
//!
//! The file is a plain concatenation of pickles, one `pickle.dump` per instance (with
//! `--processes_num N` the workers' files are joined), no torch container. Each instance is
//! a tuple (UER-py `uer/utils/data.py`, 2022):
//! - `mlm`: `(src, tgt_mlm, seg_pos)`, or `(src, seg_pos)` with `--dynamic_masking`;
//! - `lm`: `(src, seg_pos)`, `seg_pos` an int (a one-item list in later versions);
//! - `bert`: `(src, tgt_mlm, is_next, seg_pos)`, or `(src, is_next, seg_pos)` dynamic;
//! - `albert`: as `bert`, with `is_wrong_order` (A and B swapped) in place of `is_next`.
//!
//! `src` is the ids padded to `seq_length` (`seq_length + 1` for lm), `tgt_mlm` the masked
//! `[position, original id]` pairs, `seg_pos` the segment ends (`[len]`, or `[a_end, b_end]`
//! for bert/albert), `is_next` 1 for a random next sentence (albert: for swapped segments). These map one to one onto a `.uzds`
//! record.
//!
//! Each pickle is parsed by the project's own pickle reader with [`Allow::PlainData`]: no
//! global and no persistent id is admitted, so a pickle naming `os.system` (or anything) is
//! refused before any REDUCE, and nothing is ever called. The reader holds one instance's
//! bytes at a time (a 64 KiB read buffer that grows only for an instance larger than it).

use super::format::{FormatError, Header, MAX_SEQ_LENGTH, PretrainTarget, Specials};
use super::{Instance, PreprocessReport, Writer, io, vocab_hash};
use crate::checkpoint::pickle::{self, Allow, Obj, Pickle, PickleError, Value};
use crate::progress::Progress;
use crate::tokenizer::Tokenizer;
use crate::train::TrainError;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The largest single instance the reader accepts (a corrupt length cannot make it buffer
/// the whole file).
pub const MAX_INSTANCE_BYTES: usize = 64 << 20;
/// Bytes read at a time.
const READ_CHUNK: usize = 64 << 10;
/// UER-py's pickles start with PROTO (0x80); protocol 2 to 5.
const PROTO: u8 = 0x80;

/// Whether `head` (the first bytes of a file) looks like a UER-py `dataset.pt`: a pickle of
/// protocol 2 to 5 (a `.uzds` starts with its magic, a torch zip with `PK`).
pub fn looks_like_uer(head: &[u8]) -> bool {
    matches!(head, [PROTO, 2..=5, ..])
}

/// One field of an instance tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Int(i64),
    /// A list (or tuple) of ints; an empty list is `Ints(vec![])`.
    Ints(Vec<i64>),
    /// A non-empty list of `[a, b]` pairs (`tgt_mlm`).
    Pairs(Vec<(i64, i64)>),
}

impl Field {
    fn kind(&self) -> &'static str {
        match self {
            Field::Int(_) => "int",
            Field::Ints(_) => "list",
            Field::Pairs(_) => "pairs",
        }
    }

    /// As pairs (an empty list is no pairs).
    fn pairs(&self) -> Option<&[(i64, i64)]> {
        match self {
            Field::Pairs(p) => Some(p),
            Field::Ints(v) if v.is_empty() => Some(&[]),
            _ => None,
        }
    }
}

/// An instance's `src`, `tgt_mlm` (none when masked at training time), `is_next` (0 but for
/// bert/albert) and `seg_pos`.
type Parts<'a> = (&'a [i64], Option<&'a [(i64, i64)]>, i64, Vec<i64>);

/// An instance as UER-py pickled it, before it is read for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawInstance {
    pub fields: Vec<Field>,
}

impl RawInstance {
    /// The instance as JSON, the way Python's `json.dumps` writes the tuple (tuples as
    /// arrays): to compare with a decoded reference.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        J::Array(
            self.fields
                .iter()
                .map(|f| match f {
                    Field::Int(n) => J::from(*n),
                    Field::Ints(v) => J::from(v.clone()),
                    Field::Pairs(p) => {
                        J::Array(p.iter().map(|&(a, b)| J::from(vec![a, b])).collect())
                    }
                })
                .collect(),
        )
    }

    /// The tuple's shape, e.g. `(list, pairs, list)`.
    pub fn shape(&self) -> String {
        let kinds: Vec<&str> = self.fields.iter().map(Field::kind).collect();
        format!("({})", kinds.join(", "))
    }

    /// What UER-py target (and masking) this shape is, for messages.
    pub fn looks_like(&self) -> &'static str {
        use Field::*;
        match self.fields.as_slice() {
            [Ints(_), p, Ints(_)] if p.pairs().is_some() => "mlm (static masking)",
            [Ints(_), Ints(_)] => "mlm with --dynamic_masking (or lm of a later UER-py)",
            [Ints(_), Int(_)] => "lm",
            [Ints(_), p, Int(_), Ints(_)] if p.pairs().is_some() => {
                "bert or albert (static masking)"
            }
            [Ints(_), Int(_), Ints(_)] => "bert or albert with --dynamic_masking",
            _ => "no target uerzoo knows",
        }
    }

    /// Reads the instance for `target`: the record fields and whether it is masked at
    /// training time (no `tgt_mlm`). Values are checked for range only here (ids fit u32,
    /// ends and positions inside `src`); the vocabulary is checked by the caller.
    pub fn to_instance(&self, target: PretrainTarget) -> Result<(Instance, bool), String> {
        use Field::*;
        let f = self.fields.as_slice();
        let (src, tgt, is_next, seg): Parts<'_> = match (target, f) {
            (PretrainTarget::Mlm, [Ints(s), t, Ints(g)]) if t.pairs().is_some() => {
                (s, t.pairs(), 0, g.clone())
            }
            (PretrainTarget::Mlm, [Ints(s), Ints(g)]) => (s, None, 0, g.clone()),
            (PretrainTarget::Lm, [Ints(s), Int(g)]) => (s, None, 0, vec![*g]),
            (PretrainTarget::Lm, [Ints(s), Ints(g)]) => (s, None, 0, g.clone()),
            // bert's is_next and albert's is_wrong_order have the same place.
            (PretrainTarget::Bert | PretrainTarget::Albert, [Ints(s), t, Int(n), Ints(g)])
                if t.pairs().is_some() =>
            {
                (s, t.pairs(), *n, g.clone())
            }
            (PretrainTarget::Bert | PretrainTarget::Albert, [Ints(s), Int(n), Ints(g)]) => {
                (s, None, *n, g.clone())
            }
            _ => {
                return Err(format!(
                    "the instance is {}, which is {}, not a `--target {target}` instance; pass the --target given to preprocess.py",
                    self.shape(),
                    self.looks_like()
                ));
            }
        };
        let want_seg = if target.pairs() { 2 } else { 1 };
        if seg.len() != want_seg {
            return Err(format!(
                "seg_pos has {} values, a {target} instance has {want_seg}",
                seg.len()
            ));
        }
        let id = |v: i64, what: &str| -> Result<u32, String> {
            u32::try_from(v).map_err(|_| format!("{what} {v} is not a token id"))
        };
        let ids = src
            .iter()
            .map(|&v| id(v, "src holds"))
            .collect::<Result<Vec<u32>, String>>()?;
        let end = |v: i64| -> Result<u32, String> {
            match usize::try_from(v) {
                Ok(e) if e <= ids.len() => Ok(e as u32),
                _ => Err(format!(
                    "segment end {v} is outside src ({} ids)",
                    ids.len()
                )),
            }
        };
        let seg_a = end(seg[0])?;
        let seg_b = match seg.get(1) {
            Some(&b) => end(b)?,
            None => 0,
        };
        let masked = match tgt {
            Some(pairs) => pairs
                .iter()
                .map(|&(p, t)| match usize::try_from(p) {
                    Ok(p) if p < ids.len() => Ok((p, id(t, "tgt_mlm holds")?)),
                    _ => Err(format!(
                        "tgt_mlm position {p} is outside src ({} ids)",
                        ids.len()
                    )),
                })
                .collect::<Result<Vec<_>, String>>()?,
            None => Vec::new(),
        };
        if !(0..=1).contains(&is_next) {
            return Err(format!("is_next is {is_next}, not 0 or 1"));
        }
        let ins = Instance {
            ids,
            masked,
            seg_a,
            seg_b,
            is_random_next: is_next as u32,
        };
        Ok((ins, tgt.is_none()))
    }
}

/// Reads a `dataset.pt` instance by instance from any byte source.
pub struct UerReader<R> {
    src: R,
    buf: Vec<u8>,
    /// Start of the next instance in `buf`.
    start: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    /// Instances returned so far.
    index: u64,
    eof: bool,
    failed: bool,
    peak: usize,
}

impl UerReader<File> {
    /// Opens `path` (read in chunks of its own, no other buffer).
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        let f = File::open(path).map_err(|e| io(path, e))?;
        Ok(UerReader::new(f))
    }
}

impl<R: Read> UerReader<R> {
    pub fn new(src: R) -> Self {
        UerReader {
            src,
            buf: Vec::new(),
            start: 0,
            offset: 0,
            index: 0,
            eof: false,
            failed: false,
            peak: 0,
        }
    }

    /// The most bytes the reader has held at once (its buffer's peak capacity): one
    /// instance and a read chunk, whatever the file's length.
    pub fn peak_buffer(&self) -> usize {
        self.peak
    }

    /// Bytes consumed so far (the offset of the next instance).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads more bytes, dropping the consumed ones first; the read grows with what is held,
    /// so an instance larger than a chunk is parsed a logarithmic number of times.
    fn fill(&mut self) -> Result<(), FormatError> {
        self.buf.drain(..self.start);
        self.start = 0;
        let held = self.buf.len();
        if held >= MAX_INSTANCE_BYTES {
            return Err(FormatError(format!(
                "instance {} (byte offset {}) is larger than {} MiB; this is not a UER-py dataset.pt, or it is corrupt: run UER-py's preprocess.py again",
                self.index,
                self.offset,
                MAX_INSTANCE_BYTES >> 20
            )));
        }
        let want = READ_CHUNK.max(held).min(MAX_INSTANCE_BYTES - held);
        self.buf.resize(held + want, 0);
        let n = loop {
            match self.src.read(&mut self.buf[held..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(held);
                    return Err(FormatError(format!(
                        "reading at byte offset {}: {e}",
                        self.offset + held as u64
                    )));
                }
            }
        };
        self.buf.truncate(held + n);
        self.peak = self.peak.max(self.buf.capacity());
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    fn next_instance(&mut self) -> Result<Option<RawInstance>, FormatError> {
        loop {
            let avail = &self.buf[self.start..];
            if avail.is_empty() {
                if self.eof {
                    return Ok(None);
                }
                self.fill()?;
                continue;
            }
            let here = |what: String| {
                FormatError(format!(
                    "instance {} (byte offset {}): {what}",
                    self.index, self.offset
                ))
            };
            if avail[0] != PROTO {
                return Err(here(format!(
                    "starts with byte 0x{:02x}, not a pickle (0x80); this is not a UER-py dataset.pt (make one with UER-py's preprocess.py, or use `uerzoo preprocess --corpus`)",
                    avail[0]
                )));
            }
            match pickle::parse_with(avail, Allow::PlainData) {
                Ok(p) => {
                    let raw = decode(&p).map_err(here)?;
                    self.start += p.end;
                    self.offset += p.end as u64;
                    self.index += 1;
                    return Ok(Some(raw));
                }
                Err(PickleError::Truncated { .. }) if !self.eof => self.fill()?,
                Err(PickleError::Truncated { .. }) => {
                    return Err(here(
                        "the file ends inside this instance: it is truncated; copy it again or run UER-py's preprocess.py again".into(),
                    ));
                }
                Err(PickleError::ForbiddenGlobal { module, name }) => {
                    return Err(here(format!(
                        "the pickle refers to `{module}.{name}`; a UER-py dataset holds only ints and lists, so this file is refused and nothing in it was run. Do not use it: rebuild the dataset with UER-py's preprocess.py"
                    )));
                }
                Err(e @ PickleError::Malformed { .. }) => {
                    return Err(here(format!(
                        "{e}; the file is corrupt or not a UER-py dataset.pt"
                    )));
                }
            }
        }
    }
}

impl<R: Read> Iterator for UerReader<R> {
    type Item = Result<RawInstance, FormatError>;

    /// The next instance; after an error, `None`.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.next_instance().transpose();
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}

/// The root tuple of one instance pickle as fields.
fn decode(p: &Pickle) -> Result<RawInstance, String> {
    let items = match p.obj(&p.root) {
        Some(Obj::Tuple(t)) | Some(Obj::List(t)) => t,
        _ => return Err("the pickle is not a tuple; UER-py instances are tuples".into()),
    };
    let int = |v: &Value| match v {
        Value::Int(n) => Some(*n),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    };
    let seq = |v: &Value| match p.obj(v) {
        Some(Obj::Tuple(t)) | Some(Obj::List(t)) => Some(t),
        _ => None,
    };
    let mut fields = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let bad = || {
            format!(
                "field {k} is neither an int, a list of ints nor a list of [position, id] pairs (UER-py 2023+ writes `src` as (ids, pad_num), which uerzoo does not read yet: make the dataset with the 2022 preprocess.py, or from the corpus with `uerzoo preprocess --corpus`)"
            )
        };
        let field = if let Some(n) = int(item) {
            Field::Int(n)
        } else if let Some(list) = seq(item) {
            match list.first().map(|x| seq(x).is_some()) {
                Some(true) => Field::Pairs(
                    list.iter()
                        .map(|x| match seq(x).map(|pair| pair.as_slice()) {
                            Some([a, b]) => int(a).zip(int(b)),
                            _ => None,
                        })
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(bad)?,
                ),
                _ => Field::Ints(
                    list.iter()
                        .map(int)
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(bad)?,
                ),
            }
        } else {
            return Err(bad());
        };
        fields.push(field);
    }
    Ok(RawInstance { fields })
}

/// Options of [`convert_uer`].
#[derive(Debug, Clone)]
pub struct FromUerOptions {
    /// The target the dataset was made for (checked against every instance).
    pub target: PretrainTarget,
    /// The `--seq_length` given to preprocess.py (default: the longest `src`, less one for
    /// lm).
    pub seq_length: Option<usize>,
    /// Replace an existing output.
    pub force: bool,
}

/// What one pass over a `dataset.pt` found.
struct Survey {
    instances: u64,
    longest: usize,
    dynamic: bool,
    tokens: u64,
}

/// Converts UER-py's `dataset.pt` at `input` (made with the vocabulary `vocab_file`, which
/// `tok` reads) into a `.uzds` dataset at `output`, written atomically. Two streaming
/// passes: the first checks every instance (target, ids inside the vocabulary, ends and
/// positions inside `src`, one masking mode) before anything is written, the second writes.
pub fn convert_uer(
    input: &Path,
    tok: &Tokenizer,
    vocab_file: &Path,
    output: &Path,
    opts: &FromUerOptions,
    progress: &dyn Progress,
) -> Result<PreprocessReport, TrainError> {
    let started = std::time::Instant::now();
    let out_err = |e: crate::output::OutputError| TrainError::Options(e.to_string());
    crate::output::check_not_input(output, input, "--from-uer").map_err(out_err)?;
    crate::output::check_not_input(output, vocab_file, "--vocab").map_err(out_err)?;
    crate::output::check_file(output, opts.force).map_err(out_err)?;
    let bad = |message: String| TrainError::Dataset {
        path: input.to_path_buf(),
        message,
    };
    let size = std::fs::metadata(input).map_err(|e| io(input, e))?.len();
    let vocab_size = tok.vocab_size();
    progress.start("check", size);
    let survey = survey(input, opts.target, vocab_size, vocab_file, progress)?;
    progress.finish();
    let lm = usize::from(opts.target == PretrainTarget::Lm);
    let seq_length = match opts.seq_length {
        Some(s) if s + lm < survey.longest => {
            return Err(bad(format!(
                "an instance has {} ids, more than --seq-length {s}{}; pass the --seq_length given to preprocess.py",
                survey.longest,
                if lm == 1 { " + 1 (lm)" } else { "" }
            )));
        }
        Some(s) => s,
        None => survey.longest.saturating_sub(lm),
    };
    if seq_length == 0 || seq_length > MAX_SEQ_LENGTH {
        return Err(bad(format!(
            "sequence length {seq_length} is outside 1..={MAX_SEQ_LENGTH}; pass --seq-length"
        )));
    }
    let ids = tok.special_ids();
    let header = Header {
        target: opts.target,
        dynamic_masking: survey.dynamic && opts.target.masks(),
        id_bytes: if vocab_size <= 1 << 16 { 2 } else { 4 },
        seq_length,
        row: seq_length + lm,
        vocab_size,
        instances: 0,
        vocab_sha256: vocab_hash(vocab_file)?,
        seed: 0,
        dup_factor: 1,
        specials: Specials {
            cls: ids.cls,
            sep: ids.sep,
            mask: ids.mask,
            pad: ids.pad,
        },
    };
    progress.start("convert", size);
    let mut writer = Writer::create(output, header, opts.force)?;
    let mut reader = UerReader::open(input)?;
    let mut read = 0;
    while let Some(raw) = reader.next() {
        let raw = raw.map_err(|e| bad(e.0))?;
        let (ins, _) = raw
            .to_instance(opts.target)
            .map_err(|m| bad(format!("instance {}: {m}", writer.header.instances)))?;
        writer.put(&ins)?;
        progress.advance(reader.offset() - read);
        read = reader.offset();
    }
    progress.finish();
    let instances = writer.finish()?;
    if instances != survey.instances {
        return Err(bad(format!(
            "changed while it was converted ({} instances, then {instances}); convert it again",
            survey.instances
        )));
    }
    Ok(PreprocessReport {
        instances,
        lines: 0,
        tokens: survey.tokens,
        bytes_read: size,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The checking pass of [`convert_uer`].
fn survey(
    input: &Path,
    target: PretrainTarget,
    vocab_size: usize,
    vocab_file: &Path,
    progress: &dyn Progress,
) -> Result<Survey, TrainError> {
    let bad = |message: String| TrainError::Dataset {
        path: input.to_path_buf(),
        message,
    };
    let mut s = Survey {
        instances: 0,
        longest: 0,
        dynamic: false,
        tokens: 0,
    };
    let mut reader = UerReader::open(input)?;
    let mut read = 0;
    while let Some(raw) = reader.next() {
        let raw = raw.map_err(|e| bad(e.0))?;
        let i = s.instances;
        let (ins, dynamic) = raw
            .to_instance(target)
            .map_err(|m| bad(format!("instance {i}: {m}")))?;
        if i == 0 {
            s.dynamic = dynamic;
        } else if dynamic != s.dynamic {
            return Err(bad(format!(
                "instance {i} is {}, but instance 0 is {}: the file mixes datasets; rebuild it with one preprocess.py run",
                raw.looks_like(),
                if s.dynamic {
                    "dynamically masked"
                } else {
                    "statically masked"
                }
            )));
        }
        let out_of_vocab = ins
            .ids
            .iter()
            .enumerate()
            .map(|(p, &id)| (format!("src[{p}]"), id))
            .chain(
                ins.masked
                    .iter()
                    .map(|&(p, id)| (format!("tgt_mlm at {p}"), id)),
            )
            .find(|&(_, id)| id as usize >= vocab_size);
        if let Some((at, id)) = out_of_vocab {
            return Err(bad(format!(
                "instance {i}: id {id} ({at}) is outside the vocabulary of {vocab_size} tokens (`{}`); the dataset was made with another vocabulary: pass the --vocab_path (or --spm_model_path) given to preprocess.py, the one the model was trained with",
                vocab_file.display()
            )));
        }
        s.longest = s.longest.max(ins.ids.len());
        s.tokens += u64::from(ins.seg_a.max(ins.seg_b));
        s.instances += 1;
        progress.advance(reader.offset() - read);
        read = reader.offset();
    }
    if s.instances == 0 {
        return Err(bad(
            "no instances: the file is empty; run UER-py's preprocess.py again".into(),
        ));
    }
    Ok(s)
}
