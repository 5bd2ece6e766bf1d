//! Tokenizers of the zoo: text → token ids, exactly as UER-py gives them.
//!
//! This module owns turning text into ids and back, and building BERT-style inputs:
//! - [`BertTokenizer`]: `vocab.txt` + basic tokenization + WordPiece (the char-based Chinese
//!   models). [`TokenizerOptions::uer`] is UER-py's `BertTokenizer` (words over 200 chars
//!   become `[UNK]`), [`TokenizerOptions::huggingface`] transformers' (100 chars).
//! - [`SpmTokenizer`]: the sentencepiece unigram model of the word-based models
//!   (`cluecorpussmall_spm.model`), read with a small protobuf reader and encoded without the
//!   C++ library, pieces as UER-py's `encode_pieces` returns them.
//!
//! Neither protects special tokens written inside the text (UER-py's BERT tokenizer turns
//! `[MASK]` into `[`, `mask`, `]`); callers that need that, like fill-mask, split the text
//! first with [`Tokenizer::tokenize_with_specials`]. Input building ([`Tokenizer::encode_single`],
//! [`Tokenizer::encode_pair`]) follows UER-py's `run_classifier`.
//!
//! [`Tokenizer::tokenize_with_offsets`] gives the same tokens with the characters of the text
//! each came from (`uerzoo tokenize`, the `[UNK]` warnings of generate/fill-mask:
//! [`Tokenizer::unknowns`]); [`Tokenizer::model_input`] wraps them as `run_classifier` does.

mod bert;
mod proto;
mod spm;

use std::path::{Path, PathBuf};

pub use bert::{BasicTokenizer, BertTokenizer, Vocab, is_bert_punctuation, is_cjk};
pub use proto::PieceType;
pub use spm::{SPACE_SYMBOL, SpmTokenizer};

/// Special tokens, by the names of UER-py's `models/special_tokens_map.json`.
pub const CLS_TOKEN: &str = "[CLS]";
pub const SEP_TOKEN: &str = "[SEP]";
pub const MASK_TOKEN: &str = "[MASK]";
pub const PAD_TOKEN: &str = "[PAD]";
pub const UNK_TOKEN: &str = "[UNK]";

/// What can go wrong loading a tokenizer; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("reading tokenizer file `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("vocabulary `{path}` is not UTF-8 text: {source}")]
    NotUtf8 {
        path: PathBuf,
        source: std::string::FromUtf8Error,
    },
    #[error(
        "vocabulary `{path}` has no `{token}` line; a BERT vocab.txt needs [PAD] [UNK] [CLS] [SEP] [MASK]"
    )]
    MissingSpecial { path: PathBuf, token: String },
    #[error("vocabulary `{path}` cannot build a WordPiece model: {reason}")]
    BadVocab { path: PathBuf, reason: String },
    #[error("sentencepiece model `{path}` is malformed: {reason}")]
    MalformedModel { path: PathBuf, reason: String },
    #[error(
        "sentencepiece model `{path}` has no piece `{token}`; UER-py's word models define [PAD] [UNK] [CLS] [SEP] [MASK]"
    )]
    MissingPiece { path: PathBuf, token: String },
}

/// How the BERT tokenizer treats words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerOptions {
    /// Lower-case words (UER-py `--do_lower_case`, default true; transformers `do_lower_case`).
    pub lower_case: bool,
    /// Strip accents (NFD, drop Mn); `None` follows `lower_case`, as both implementations do.
    pub strip_accents: Option<bool>,
    /// Words longer than this many characters become `[UNK]`: 200 in UER-py, 100 in
    /// transformers.
    pub max_word_chars: usize,
}

impl TokenizerOptions {
    /// UER-py 2022 `BertTokenizer`: lower-case, strip accents, 200 chars per word.
    pub fn uer() -> Self {
        Self {
            lower_case: true,
            strip_accents: None,
            max_word_chars: 200,
        }
    }

    /// transformers `BertTokenizer` of the zoo's HF repos: lower-case, strip accents, 100.
    pub fn huggingface() -> Self {
        Self {
            max_word_chars: 100,
            ..Self::uer()
        }
    }
}

impl Default for TokenizerOptions {
    fn default() -> Self {
        Self::uer()
    }
}

/// Ids of the special tokens in one vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
    pub pad: u32,
    pub unk: u32,
}

/// A model input: token ids and segment ids (1 first text, 2 second text, 0 padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub segments: Vec<u32>,
}

/// One token of a text with where it came from: `[start, end)` in characters (not bytes)
/// of the text. Special tokens added around a text ([`Tokenizer::model_input`]) have
/// `start == end == 0`, as transformers' offset mappings give them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpan {
    pub token: String,
    pub id: u32,
    pub start: usize,
    pub end: usize,
}

/// A model input with its tokens: `[CLS] a [SEP]` (segment 1), `b [SEP]` (segment 2),
/// `[PAD]` (segment 0), as [`Tokenizer::encode_pair`] builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInput {
    pub tokens: Vec<TokenSpan>,
    pub segments: Vec<u32>,
}

impl ModelInput {
    /// The ids of the tokens.
    pub fn ids(&self) -> Vec<u32> {
        self.tokens.iter().map(|t| t.id).collect()
    }
}

/// How an example longer than `seq_length` is cut to fit.
///
/// - [`Truncation::Uer`]: UER-py's run_classifier: `[CLS] a [SEP]` (`b [SEP]`) is built whole,
///   then cut at `seq_length`, so a long text loses its final `[SEP]`.
/// - [`Truncation::Hf`]: transformers' (`truncation=True`, the default strategy
///   `longest_first` of the tokenizers library): the texts are cut first, so that `[CLS]`, the
///   texts and every `[SEP]` fit; a single text keeps `seq_length - 2` tokens; of a pair with
///   `m = seq_length - 3` tokens to share, only the longer text is cut while the shorter one
///   fits in `m - shorter`, else the first gets `m / 2` and the second `m - m / 2` (the longer
///   text gets the odd token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncation {
    #[default]
    Uer,
    Hf,
}

impl std::str::FromStr for Truncation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uer" => Ok(Truncation::Uer),
            "hf" => Ok(Truncation::Hf),
            other => Err(format!(
                "unknown truncation `{other}`; use uer (UER-py: cut after the final [SEP]) or hf (transformers: the final [SEP] kept)"
            )),
        }
    }
}

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Truncation::Uer => "uer",
            Truncation::Hf => "hf",
        })
    }
}

/// The lengths a pair of texts of `n1` and `n2` tokens keeps under transformers'
/// `longest_first` with `max` tokens for both (see [`Truncation::Hf`]).
pub fn longest_first(n1: usize, n2: usize, max: usize) -> (usize, usize) {
    if n1 + n2 <= max {
        return (n1, n2);
    }
    let (short, long) = (n1.min(n2), n1.max(n2));
    let (mut keep_short, mut keep_long) = (short, long.min(max.saturating_sub(short)));
    if keep_long < short {
        keep_short = max / 2;
        keep_long = max - max / 2;
    }
    if n1 > n2 {
        (keep_long, keep_short)
    } else {
        (keep_short, keep_long)
    }
}

/// Text that became `[UNK]`: the characters `[start, end)` of the text, and what they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// A piece of text split on special tokens (see [`Tokenizer::split_on_specials`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    Text(&'a str),
    Special(&'a str),
}

#[derive(Debug, Clone)]
enum Inner {
    Bert(Box<BertTokenizer>),
    Spm(Box<SpmTokenizer>),
}

/// A zoo tokenizer: BERT WordPiece or sentencepiece, plus the special-token ids.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: Inner,
    special: SpecialIds,
}

fn read(path: &Path) -> Result<Vec<u8>, TokenizerError> {
    std::fs::read(path).map_err(|source| TokenizerError::Io {
        path: path.to_owned(),
        source,
    })
}

impl Tokenizer {
    /// Loads a BERT `vocab.txt`; it must contain the five special tokens.
    pub fn from_vocab_file(
        path: impl AsRef<Path>,
        options: TokenizerOptions,
    ) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let text = String::from_utf8(read(path)?).map_err(|source| TokenizerError::NotUtf8 {
            path: path.to_owned(),
            source,
        })?;
        Self::from_vocab(Vocab::parse(&text), options, path)
    }

    /// Builds a BERT tokenizer from vocabulary text (`path` only names it in errors).
    pub fn from_vocab_str(
        text: &str,
        options: TokenizerOptions,
        path: impl AsRef<Path>,
    ) -> Result<Self, TokenizerError> {
        Self::from_vocab(Vocab::parse(text), options, path.as_ref())
    }

    fn from_vocab(
        vocab: Vocab,
        options: TokenizerOptions,
        path: &Path,
    ) -> Result<Self, TokenizerError> {
        let special = special_ids(
            |t| vocab.ids.get(t).copied(),
            |token| TokenizerError::MissingSpecial {
                path: path.to_owned(),
                token,
            },
        )?;
        let bert = BertTokenizer::new(vocab, &options, UNK_TOKEN).map_err(|reason| {
            TokenizerError::BadVocab {
                path: path.to_owned(),
                reason,
            }
        })?;
        Ok(Self {
            inner: Inner::Bert(Box::new(bert)),
            special,
        })
    }

    /// Loads a sentencepiece unigram `.model` (UER-py `--spm_model_path`).
    pub fn from_spm_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        Self::from_spm_bytes(&read(path)?, path)
    }

    /// Builds a sentencepiece tokenizer from the model's bytes (`path` only names it).
    pub fn from_spm_bytes(bytes: &[u8], path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let malformed = |reason: String| TokenizerError::MalformedModel {
            path: path.to_owned(),
            reason,
        };
        let model = proto::ModelProto::parse(bytes).map_err(malformed)?;
        if model.pieces.is_empty() {
            return Err(malformed("no pieces".into()));
        }
        let spm = SpmTokenizer::from_proto(model).map_err(malformed)?;
        let special = special_ids(
            |t| spm.token_to_id(t),
            |token| TokenizerError::MissingPiece {
                path: path.to_owned(),
                token,
            },
        )?;
        Ok(Self {
            inner: Inner::Spm(Box::new(spm)),
            special,
        })
    }

    /// The BERT tokenizer inside, if this is one.
    pub fn as_bert(&self) -> Option<&BertTokenizer> {
        match &self.inner {
            Inner::Bert(b) => Some(b),
            Inner::Spm(_) => None,
        }
    }

    /// The sentencepiece tokenizer inside, if this is one.
    pub fn as_spm(&self) -> Option<&SpmTokenizer> {
        match &self.inner {
            Inner::Spm(s) => Some(s),
            Inner::Bert(_) => None,
        }
    }

    /// Tokens of `text` with their ids, no special tokens added.
    pub fn tokenize_with_ids(&self, text: &str) -> Vec<(String, u32)> {
        match &self.inner {
            Inner::Bert(b) => b.tokenize_with_ids(text),
            Inner::Spm(s) => s.tokenize_with_ids(text),
        }
    }

    /// Tokens of `text` (UER-py `tokenizer.tokenize`).
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        self.tokenize_with_ids(text)
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    }

    /// Ids of `text`, no special tokens added.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.tokenize_with_ids(text)
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }

    /// The id of a token; `None` when the vocabulary lacks it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match &self.inner {
            Inner::Bert(b) => b.vocab.ids.get(token).copied(),
            Inner::Spm(s) => s.token_to_id(token),
        }
    }

    /// UER-py `convert_tokens_to_ids`: unknown tokens map to `[UNK]`.
    pub fn convert_tokens_to_ids<S: AsRef<str>>(&self, tokens: &[S]) -> Vec<u32> {
        tokens
            .iter()
            .map(|t| self.token_to_id(t.as_ref()).unwrap_or(self.special.unk))
            .collect()
    }

    /// The token of an id; `None` past the vocabulary.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        match &self.inner {
            Inner::Bert(b) => b.vocab.tokens.get(id as usize).map(String::as_str),
            Inner::Spm(s) => s.id_to_token(id),
        }
    }

    /// Tokens of ids; ids past the vocabulary become `[UNK]`.
    pub fn ids_to_tokens(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&id| self.id_to_token(id).unwrap_or(UNK_TOKEN).to_owned())
            .collect()
    }

    /// Readable text of ids: WordPiece `##` joined, sentencepiece `▁` as a blank, CJK
    /// characters without spaces between them, special tokens kept.
    pub fn decode(&self, ids: &[u32]) -> String {
        let tokens = self.ids_to_tokens(ids);
        match &self.inner {
            Inner::Spm(_) => tokens.concat().replace(SPACE_SYMBOL, " ").trim().to_owned(),
            Inner::Bert(_) => {
                let mut out = String::new();
                let mut prev_ascii_word = false;
                for token in &tokens {
                    if let Some(rest) = token.strip_prefix("##") {
                        out.push_str(rest);
                        continue;
                    }
                    let ascii_word = token.chars().all(|c| c.is_ascii_alphanumeric());
                    if prev_ascii_word && ascii_word {
                        out.push(' ');
                    }
                    out.push_str(token);
                    prev_ascii_word = ascii_word;
                }
                out
            }
        }
    }

    /// Number of tokens in the vocabulary (lines of `vocab.txt`, pieces of the model).
    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Inner::Bert(b) => b.vocab.tokens.len(),
            Inner::Spm(s) => s.vocab_size(),
        }
    }

    /// All special-token ids.
    pub fn special_ids(&self) -> SpecialIds {
        self.special
    }
    pub fn cls_id(&self) -> u32 {
        self.special.cls
    }
    pub fn sep_id(&self) -> u32 {
        self.special.sep
    }
    pub fn mask_id(&self) -> u32 {
        self.special.mask
    }
    pub fn pad_id(&self) -> u32 {
        self.special.pad
    }
    pub fn unk_id(&self) -> u32 {
        self.special.unk
    }

    /// Splits `text` on the five special tokens, keeping them whole (leftmost match).
    /// `"北京是[MASK]国的首都"` → `Text("北京是"), Special("[MASK]"), Text("国的首都")`.
    pub fn split_on_specials(text: &str) -> Vec<Segment<'_>> {
        split_on(
            text,
            &[CLS_TOKEN, SEP_TOKEN, MASK_TOKEN, PAD_TOKEN, UNK_TOKEN],
        )
    }

    /// Tokens and ids of `text`, with special tokens written in it kept whole (what
    /// transformers does and fill-mask needs; UER-py's BERT tokenizer does not). The text
    /// between them is tokenized piece by piece. Sentencepiece already keeps its
    /// user-defined pieces (`[MASK]` in the word models) whole, exactly as UER-py does, so
    /// those are left in the text rather than split off.
    pub fn tokenize_with_specials(&self, text: &str) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for segment in split_on(text, &self.unprotected_specials()) {
            match segment {
                Segment::Text(t) => out.extend(self.tokenize_with_ids(t)),
                Segment::Special(s) => out.push((
                    s.to_owned(),
                    self.token_to_id(s).unwrap_or(self.special.unk),
                )),
            }
        }
        out
    }

    /// Tokens of `text` with their character ranges (see [`TokenSpan`]); the same tokens
    /// as [`Self::tokenize_with_ids`] (UER-py: `[MASK]` written in the text is split).
    pub fn tokenize_with_offsets(&self, text: &str) -> Vec<TokenSpan> {
        self.spans_of(text, 0)
    }

    /// Tokens of `text` with special tokens in it kept whole, with character ranges; the
    /// same tokens as [`Self::tokenize_with_specials`] (transformers' `BertTokenizer`).
    pub fn tokenize_with_specials_offsets(&self, text: &str) -> Vec<TokenSpan> {
        let mut out = Vec::new();
        let mut base = 0;
        for segment in split_on(text, &self.unprotected_specials()) {
            match segment {
                Segment::Text(t) => {
                    out.extend(self.spans_of(t, base));
                    base += t.chars().count();
                }
                Segment::Special(s) => {
                    let end = base + s.chars().count();
                    out.push(TokenSpan {
                        token: s.to_owned(),
                        id: self.token_to_id(s).unwrap_or(self.special.unk),
                        start: base,
                        end,
                    });
                    base = end;
                }
            }
        }
        out
    }

    fn spans_of(&self, text: &str, base: usize) -> Vec<TokenSpan> {
        let raw = match &self.inner {
            Inner::Bert(b) => b.tokenize_with_offsets(text),
            Inner::Spm(s) => s.tokenize_with_offsets(text),
        };
        raw.into_iter()
            .map(|(token, id, start, end)| TokenSpan {
                token,
                id,
                start: base + start,
                end: base + end,
            })
            .collect()
    }

    /// The parts of `text` that `spans` (its tokens) turned into `[UNK]`; a `[UNK]` written
    /// in the text is not one of them. For warning users about prompts.
    pub fn unknowns(&self, text: &str, spans: &[TokenSpan]) -> Vec<Unknown> {
        let chars: Vec<char> = text.chars().collect();
        spans
            .iter()
            .filter(|t| t.id == self.special.unk)
            .map(|t| Unknown {
                text: chars[t.start.min(chars.len())..t.end.min(chars.len())]
                    .iter()
                    .collect(),
                start: t.start,
                end: t.end,
            })
            .filter(|u| u.text != UNK_TOKEN)
            .collect()
    }

    /// The model input of a text (and a second one): `[CLS] a [SEP]` segment 1, `b [SEP]`
    /// segment 2, as [`Self::encode_single_with_sep`] and [`Self::encode_pair`]; with
    /// `seq_len`, cut (the last tokens first) and padded with `[PAD]` / segment 0 to it.
    pub fn model_input(
        &self,
        a: &[TokenSpan],
        b: Option<&[TokenSpan]>,
        seq_len: Option<usize>,
    ) -> ModelInput {
        let special = |token: &str, id: u32| TokenSpan {
            token: token.to_owned(),
            id,
            start: 0,
            end: 0,
        };
        let mut tokens = vec![special(CLS_TOKEN, self.special.cls)];
        tokens.extend_from_slice(a);
        tokens.push(special(SEP_TOKEN, self.special.sep));
        let first = tokens.len();
        if let Some(b) = b {
            tokens.extend_from_slice(b);
            tokens.push(special(SEP_TOKEN, self.special.sep));
        }
        let mut segments = vec![1; first];
        segments.resize(tokens.len(), 2);
        if let Some(n) = seq_len {
            tokens.truncate(n);
            segments.truncate(n);
            tokens.resize(n, special(PAD_TOKEN, self.special.pad));
            segments.resize(n, 0);
        }
        ModelInput { tokens, segments }
    }

    /// The special tokens the tokenizer itself would split (all but sentencepiece's
    /// user-defined pieces).
    fn unprotected_specials(&self) -> Vec<&'static str> {
        [CLS_TOKEN, SEP_TOKEN, MASK_TOKEN, PAD_TOKEN, UNK_TOKEN]
            .into_iter()
            .filter(|s| match &self.inner {
                Inner::Bert(_) => true,
                Inner::Spm(spm) => spm
                    .token_to_id(s)
                    .and_then(|id| spm.piece_type(id))
                    .is_none_or(|kind| kind != PieceType::UserDefined),
            })
            .collect()
    }

    /// Ids of `text` with special tokens in it kept whole.
    pub fn encode_with_specials(&self, text: &str) -> Vec<u32> {
        self.tokenize_with_specials(text)
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }

    /// One text as UER-py's `run_classifier` (as FACTS §5 records it) builds it:
    /// `[CLS] a`, segment 1, cut to `seq_len`, padded with `[PAD]`/segment 0.
    pub fn encode_single(&self, text: &str, seq_len: usize) -> Encoded {
        self.single_from_ids(&self.encode(text), seq_len)
    }

    /// [`Self::encode_single`] of a text already turned into `ids` (by [`Self::encode`]).
    pub fn single_from_ids(&self, ids: &[u32], seq_len: usize) -> Encoded {
        let mut all = Vec::with_capacity(ids.len() + 1);
        all.push(self.special.cls);
        all.extend_from_slice(ids);
        let segments = vec![1; all.len()];
        self.finish(all, segments, seq_len)
    }

    /// One text as UER-py's `run_classifier` builds it since 2022-05-23 (commit 012374b):
    /// `[CLS] a [SEP]`, segment 1, cut and padded like [`Self::encode_single`].
    pub fn encode_single_with_sep(&self, text: &str, seq_len: usize) -> Encoded {
        let mut ids = vec![self.special.cls];
        ids.extend(self.encode(text));
        ids.push(self.special.sep);
        let segments = vec![1; ids.len()];
        self.finish(ids, segments, seq_len)
    }

    /// A text pair: `[CLS] a [SEP]` segment 1, `b [SEP]` segment 2; cut to `seq_len` (the
    /// final `[SEP]` can be cut), padded with `[PAD]`/segment 0.
    pub fn encode_pair(&self, a: &str, b: &str, seq_len: usize) -> Encoded {
        let mut ids = vec![self.special.cls];
        ids.extend(self.encode(a));
        ids.push(self.special.sep);
        let first = ids.len();
        ids.extend(self.encode(b));
        ids.push(self.special.sep);
        let mut segments = vec![1; first];
        segments.resize(ids.len(), 2);
        self.finish(ids, segments, seq_len)
    }

    /// An example (one text, or a pair) as a classifier reads it, cut by `truncation`:
    /// [`Truncation::Uer`] is [`Self::encode_single_with_sep`] / [`Self::encode_pair`];
    /// [`Truncation::Hf`] cuts the texts so that every `[SEP]` stays (same segments, 1 and 2).
    pub fn encode_example(
        &self,
        a: &str,
        b: Option<&str>,
        seq_len: usize,
        truncation: Truncation,
    ) -> Encoded {
        match (truncation, b) {
            (Truncation::Uer, Some(b)) => self.encode_pair(a, b, seq_len),
            (Truncation::Uer, None) => self.encode_single_with_sep(a, seq_len),
            (Truncation::Hf, None) => {
                let mut text = self.encode(a);
                text.truncate(seq_len.saturating_sub(2));
                let mut ids = vec![self.special.cls];
                ids.extend(text);
                ids.push(self.special.sep);
                let segments = vec![1; ids.len()];
                self.finish(ids, segments, seq_len)
            }
            (Truncation::Hf, Some(b)) => {
                let (mut first, mut second) = (self.encode(a), self.encode(b));
                let (n1, n2) = longest_first(first.len(), second.len(), seq_len.saturating_sub(3));
                first.truncate(n1);
                second.truncate(n2);
                let mut ids = vec![self.special.cls];
                ids.extend(first);
                ids.push(self.special.sep);
                let mut segments = vec![1; ids.len()];
                ids.extend(second);
                ids.push(self.special.sep);
                segments.resize(ids.len(), 2);
                self.finish(ids, segments, seq_len)
            }
        }
    }

    fn finish(&self, mut ids: Vec<u32>, mut segments: Vec<u32>, seq_len: usize) -> Encoded {
        ids.truncate(seq_len);
        segments.truncate(seq_len);
        ids.resize(seq_len, self.special.pad);
        segments.resize(seq_len, 0);
        Encoded { ids, segments }
    }
}

/// Splits `text` on `specials` (all start with `[`), leftmost match first.
fn split_on<'a>(text: &'a str, specials: &[&'a str]) -> Vec<Segment<'a>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'['
            && let Some(special) = specials
                .iter()
                .find(|s| bytes[i..].starts_with(s.as_bytes()))
        {
            if start < i {
                out.push(Segment::Text(&text[start..i]));
            }
            out.push(Segment::Special(special));
            i += special.len();
            start = i;
            continue;
        }
        i += 1;
    }
    if start < text.len() {
        out.push(Segment::Text(&text[start..]));
    }
    out
}

/// Looks up the five special tokens; the first missing one becomes the error.
fn special_ids(
    lookup: impl Fn(&str) -> Option<u32>,
    missing: impl Fn(String) -> TokenizerError,
) -> Result<SpecialIds, TokenizerError> {
    let get = |token: &str| lookup(token).ok_or_else(|| missing(token.to_owned()));
    Ok(SpecialIds {
        cls: get(CLS_TOKEN)?,
        sep: get(SEP_TOKEN)?,
        mask: get(MASK_TOKEN)?,
        pad: get(PAD_TOKEN)?,
        unk: get(UNK_TOKEN)?,
    })
}
