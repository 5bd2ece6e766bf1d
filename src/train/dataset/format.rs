//! The on-disk dataset format (`.uzds`, little-endian), parsed from bytes alone: no file
//! system, no crate imports, so the fuzz crate compiles this file on its own
//! (`fuzz/fuzz_targets/dataset.rs`). Every field a record or header holds is checked here;
//! [`super::DatasetFile`] adds the file, the mapping and the path to the messages.
//!
//! A 128-byte header: magic `UZDSET01`, header length u32, target u8 (0 mlm, 1 lm,
//! 2 bert, 3 albert), dynamic-masking u8, bytes per id u8 (2 or 4), a reserved byte, seq_length u32,
//! row length u32 (seq_length, or seq_length + 1 for lm), vocab size u32, instance count
//! u64, the SHA-256 of the vocabulary file (32 bytes), the seed u64, dup_factor u32 and the
//! ids of `[CLS] [SEP] [MASK] [PAD]` (u32 each), zero padding. Then fixed-size records:
//! `row` ids, `row` masked targets (static mlm/bert/albert only; 0 = not predicted), then
//! three u32: end of segment A, end of segment B (0 without B), the sentence label
//! (bert: B is a random next sentence; albert: A and B are swapped).

/// What is wrong with a dataset's bytes; the message names the offset and says how to
/// rebuild the file, the caller adds the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const REBUILD: &str = "rebuild it with `uerzoo preprocess`";

/// File magic (version 1 of the format).
pub const MAGIC: &[u8; 8] = b"UZDSET01";
/// Header length in bytes.
pub const HEADER_LEN: usize = 128;
/// The longest sequence a dataset header may declare (UER-py's models have 512 positions;
/// this bound only keeps a corrupt header from sizing huge buffers).
pub const MAX_SEQ_LENGTH: usize = 1 << 16;
/// Pretraining target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PretrainTarget {
    /// Masked language model (RoBERTa).
    Mlm,
    /// Left-to-right language model (GPT-2).
    Lm,
    /// MLM + next-sentence prediction (BERT).
    Bert,
    /// MLM + sentence-order prediction (ALBERT): two consecutive segments of a document,
    /// swapped with probability 0.5.
    Albert,
}

impl PretrainTarget {
    fn code(self) -> u8 {
        match self {
            PretrainTarget::Mlm => 0,
            PretrainTarget::Lm => 1,
            PretrainTarget::Bert => 2,
            PretrainTarget::Albert => 3,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        [
            PretrainTarget::Mlm,
            PretrainTarget::Lm,
            PretrainTarget::Bert,
            PretrainTarget::Albert,
        ]
        .into_iter()
        .find(|t| t.code() == c)
    }
    /// Whether instances carry masked targets.
    pub fn masks(self) -> bool {
        self != PretrainTarget::Lm
    }
    /// Whether instances are sentence pairs with a sentence-prediction label (NSP for
    /// `bert`, SOP for `albert`).
    pub fn pairs(self) -> bool {
        matches!(self, PretrainTarget::Bert | PretrainTarget::Albert)
    }
}

impl std::fmt::Display for PretrainTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PretrainTarget::Mlm => "mlm",
            PretrainTarget::Lm => "lm",
            PretrainTarget::Bert => "bert",
            PretrainTarget::Albert => "albert",
        })
    }
}

impl std::str::FromStr for PretrainTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mlm" => Ok(PretrainTarget::Mlm),
            "lm" => Ok(PretrainTarget::Lm),
            "bert" => Ok(PretrainTarget::Bert),
            "albert" => Ok(PretrainTarget::Albert),
            _ => Err(format!(
                "unknown target `{s}`; use mlm, lm, bert (mlm + next-sentence prediction) or albert (mlm + sentence-order prediction)"
            )),
        }
    }
}

/// The special ids masking and padding need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Specials {
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
    pub pad: u32,
}

/// The header of a dataset file.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub target: PretrainTarget,
    pub dynamic_masking: bool,
    pub id_bytes: usize,
    pub seq_length: usize,
    pub row: usize,
    pub vocab_size: usize,
    pub instances: u64,
    pub vocab_sha256: [u8; 32],
    pub seed: u64,
    pub dup_factor: u32,
    pub specials: Specials,
}

impl Header {
    /// Bytes per record.
    pub fn record_len(&self) -> usize {
        let targets = if self.target.masks() && !self.dynamic_masking {
            self.row
        } else {
            0
        };
        (self.row + targets) * self.id_bytes + 12
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[12] = self.target.code();
        b[13] = self.dynamic_masking as u8;
        b[14] = self.id_bytes as u8;
        b[16..20].copy_from_slice(&(self.seq_length as u32).to_le_bytes());
        b[20..24].copy_from_slice(&(self.row as u32).to_le_bytes());
        b[24..28].copy_from_slice(&(self.vocab_size as u32).to_le_bytes());
        b[28..36].copy_from_slice(&self.instances.to_le_bytes());
        b[36..68].copy_from_slice(&self.vocab_sha256);
        b[68..76].copy_from_slice(&self.seed.to_le_bytes());
        b[76..80].copy_from_slice(&self.dup_factor.to_le_bytes());
        let s = self.specials;
        for (k, v) in [s.cls, s.sep, s.mask, s.pad].into_iter().enumerate() {
            b[80 + 4 * k..84 + 4 * k].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parses and checks the header at the start of `b` (the whole file or more).
    pub fn parse(b: &[u8]) -> Result<Self, FormatError> {
        let bad = |m: String| FormatError(m);
        let rebuild = REBUILD;
        if b.len() < MAGIC.len() || &b[..8] != MAGIC {
            return Err(bad(
                "not a uerzoo dataset (bad magic); make one with `uerzoo preprocess`".into(),
            ));
        }
        if b.len() < HEADER_LEN {
            return Err(bad(format!(
                "truncated: {} bytes, but the header alone is {HEADER_LEN}; {rebuild}",
                b.len()
            )));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("header length checked"));
        if u32_at(8) as usize != HEADER_LEN {
            return Err(bad(format!(
                "header length (offset 8) is {}, not {HEADER_LEN}: another version of the format; {rebuild}",
                u32_at(8)
            )));
        }
        let target = PretrainTarget::from_code(b[12]).ok_or_else(|| {
            bad(format!(
                "unknown target code {} at offset 12; {rebuild}",
                b[12]
            ))
        })?;
        let id_bytes = b[14] as usize;
        if id_bytes != 2 && id_bytes != 4 {
            return Err(bad(format!(
                "bytes per id (offset 14) is {id_bytes}, must be 2 or 4; {rebuild}"
            )));
        }
        let seq_length = u32_at(16) as usize;
        let row = u32_at(20) as usize;
        let vocab_size = u32_at(24) as usize;
        if seq_length == 0 || seq_length > MAX_SEQ_LENGTH {
            return Err(bad(format!(
                "seq_length (offset 16) is {seq_length}, must be 1..={MAX_SEQ_LENGTH}; {rebuild}"
            )));
        }
        let want_row = seq_length + usize::from(target == PretrainTarget::Lm);
        if row != want_row {
            return Err(bad(format!(
                "row length (offset 20) is {row}, but seq_length (offset 16) {seq_length} with target {target} needs {want_row}; {rebuild}"
            )));
        }
        if vocab_size == 0 || (id_bytes == 2 && vocab_size > 1 << 16) {
            return Err(bad(format!(
                "vocab size (offset 24) is {vocab_size}, which {id_bytes}-byte ids cannot hold; {rebuild}"
            )));
        }
        let specials = Specials {
            cls: u32_at(80),
            sep: u32_at(84),
            mask: u32_at(88),
            pad: u32_at(92),
        };
        for (name, off, id) in [
            ("[CLS]", 80, specials.cls),
            ("[SEP]", 84, specials.sep),
            ("[MASK]", 88, specials.mask),
            ("[PAD]", 92, specials.pad),
        ] {
            if id as usize >= vocab_size {
                return Err(bad(format!(
                    "the {name} id (offset {off}) is {id}, outside the vocabulary of {vocab_size}; {rebuild}"
                )));
            }
        }
        Ok(Header {
            target,
            dynamic_masking: b[13] != 0,
            id_bytes,
            seq_length,
            row,
            vocab_size,
            instances: u64::from_le_bytes(b[28..36].try_into().expect("header length checked")),
            vocab_sha256: b[36..68].try_into().expect("header length checked"),
            seed: u64::from_le_bytes(b[68..76].try_into().expect("header length checked")),
            dup_factor: u32_at(76),
            specials,
        })
    }
}

/// One instance as read back, padded to the row length.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub ids: Vec<u32>,
    /// Static masking: the original id at masked positions, 0 elsewhere.
    pub targets: Option<Vec<u32>>,
    pub seg_a: u32,
    pub seg_b: u32,
    /// The sentence label: bert, B is a random next sentence; albert, A and B are swapped.
    pub is_random_next: u32,
}

impl Header {
    /// Checks that a file of `len` bytes holds exactly this header's instances.
    pub fn check_len(&self, len: u64) -> Result<(), FormatError> {
        let want = self
            .instances
            .checked_mul(self.record_len() as u64)
            .and_then(|n| n.checked_add(HEADER_LEN as u64));
        if want != Some(len) {
            return Err(FormatError(format!(
                "{len} bytes, but the header says {} instances of {} bytes after a {HEADER_LEN}-byte header; the file is truncated or corrupt, {REBUILD}",
                self.instances,
                self.record_len()
            )));
        }
        if self.instances == 0 {
            return Err(FormatError(format!(
                "the dataset has no instances (was the corpus empty?); {REBUILD} from a longer corpus"
            )));
        }
        Ok(())
    }
}

impl Record {
    /// Parses instance `i` from its [`Header::record_len`] bytes `rec`, which start at byte
    /// `start` of the file: an id outside the vocabulary or a segment end past the row is an
    /// error naming the byte offset.
    pub fn parse(h: &Header, i: usize, start: usize, rec: &[u8]) -> Result<Record, FormatError> {
        let rl = h.record_len();
        if rec.len() != rl {
            return Err(FormatError(format!(
                "instance {i} (byte offset {start}): {} bytes, records are {rl}; {REBUILD}",
                rec.len()
            )));
        }
        let read_ids = |bytes: &[u8]| -> Vec<u32> {
            if h.id_bytes == 2 {
                bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
                    .collect()
            } else {
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
        };
        let corrupt = |offset: usize, what: String| {
            FormatError(format!(
                "instance {i} (byte offset {}): {what}; the file is corrupt, {REBUILD}",
                start + offset
            ))
        };
        let check_ids = |ids: &[u32], base: usize| -> Result<(), FormatError> {
            match ids.iter().position(|&id| id as usize >= h.vocab_size) {
                Some(k) => Err(corrupt(
                    base + k * h.id_bytes,
                    format!(
                        "id {} is outside the vocabulary of {}",
                        ids[k], h.vocab_size
                    ),
                )),
                None => Ok(()),
            }
        };
        let n = h.row * h.id_bytes;
        let ids = read_ids(&rec[..n]);
        check_ids(&ids, 0)?;
        let (targets, tail) = if h.target.masks() && !h.dynamic_masking {
            let t = read_ids(&rec[n..2 * n]);
            check_ids(&t, n)?;
            (Some(t), 2 * n)
        } else {
            (None, n)
        };
        let u = |o: usize| {
            let b = &rec[tail + o..tail + o + 4];
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        let (seg_a, seg_b) = (u(0), u(4));
        for (o, end) in [(0, seg_a), (4, seg_b)] {
            if end as usize > h.row {
                return Err(corrupt(
                    tail + o,
                    format!("segment end {end} is past the row length {}", h.row),
                ));
            }
        }
        Ok(Record {
            ids,
            targets,
            seg_a,
            seg_b,
            is_random_next: u(8),
        })
    }
}
