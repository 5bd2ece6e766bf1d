//! The BERT tokenizer of the Chinese models: `vocab.txt`, basic tokenization and WordPiece,
//! as UER-py's `BertTokenizer` (and transformers' `BertTokenizer`) run them.
//!
//! Basic step, character by character as the Python code does: drop NUL, U+FFFD and Cc/Cf
//! characters, map `\t \n \r` and Zs to a space, put spaces around CJK ideographs, split on
//! whitespace, lower-case and strip accents (NFD, drop Mn) when configured, split off every
//! punctuation character (non-alphanumeric ASCII and Unicode P*). WordPiece is the
//! `tokenizers` crate's model (greedy longest match, `##` continuations, `[UNK]` for a word
//! that does not match or is longer than the word limit).

use std::collections::HashMap;

use finl_unicode::categories::CharacterCategories;
use tokenizers::Model;
use tokenizers::models::wordpiece::WordPiece;
use unicode_normalization::UnicodeNormalization;

use super::TokenizerOptions;

/// A loaded `vocab.txt`: token per line, id = line number.
#[derive(Debug, Clone)]
pub struct Vocab {
    /// Token of each line (`i2w`).
    pub tokens: Vec<String>,
    /// Token → id; a token on several lines keeps the last one, as Python's dict does.
    pub ids: HashMap<String, u32>,
}

impl Vocab {
    /// Parses a vocabulary as UER-py's `Vocab.load` does: the first whitespace-separated
    /// field of each line, or the line itself (without `\r\n`) when it is blank.
    pub fn parse(text: &str) -> Self {
        let mut tokens = Vec::new();
        let mut ids = HashMap::new();
        for (index, line) in text.split_inclusive('\n').enumerate() {
            let bare = line.trim_end_matches(['\r', '\n']);
            let token = bare.split_whitespace().next().unwrap_or(bare).to_owned();
            ids.insert(token.clone(), index as u32);
            tokens.push(token);
        }
        Self { tokens, ids }
    }
}

/// Python's `str.isdigit` for the characters that reach it here (decimal digits).
pub(crate) fn is_python_digit(c: char) -> bool {
    c.is_ascii_digit() || c.is_number_decimal()
}

/// `_is_whitespace` of the BERT code.
fn is_bert_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r') || c.is_separator_space()
}

/// `_is_control` of the BERT code: Cc and Cf, except `\t \n \r`.
fn is_bert_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && (c.is_control() || c.is_format())
}

/// `_is_punctuation` of the BERT code: all non-alphanumeric ASCII, and Unicode P*.
pub fn is_bert_punctuation(c: char) -> bool {
    matches!(c as u32, 33..=47 | 58..=64 | 91..=96 | 123..=126) || c.is_punctuation()
}

/// `_is_chinese_char` of the BERT code: the CJK ideograph blocks.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

/// BERT basic tokenization into words (before WordPiece).
#[derive(Debug, Clone, Copy)]
pub struct BasicTokenizer {
    pub lower_case: bool,
    pub strip_accents: bool,
}

impl BasicTokenizer {
    /// The words of `text`, pushed onto `out`.
    pub fn tokenize_into(&self, text: &str, out: &mut Vec<String>) {
        // Clean + CJK spacing in one pass.
        let mut cleaned = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            if c == '\0' || c == '\u{fffd}' || is_bert_control(c) {
                continue;
            }
            if is_bert_whitespace(c) {
                cleaned.push(' ');
            } else if is_cjk(c) {
                cleaned.push(' ');
                cleaned.push(c);
                cleaned.push(' ');
            } else {
                cleaned.push(c);
            }
        }
        for word in cleaned.split_whitespace() {
            let lowered;
            let mut word = word;
            if self.lower_case {
                lowered = word.to_lowercase();
                word = &lowered;
            }
            let stripped;
            if self.strip_accents {
                stripped = word
                    .nfd()
                    .filter(|c| !c.is_mark_nonspacing())
                    .collect::<String>();
                word = &stripped;
            }
            split_on_punctuation(word, out);
        }
    }
}

impl BasicTokenizer {
    /// [`Self::tokenize_into`] with, for every character of every word, the range of
    /// characters of `text` it came from (lower-casing and accent stripping keep a character
    /// where it was; a word whose characters cannot be lined up one by one with its source
    /// gets the whole source run for each of them).
    pub fn words_with_offsets(&self, text: &str) -> Vec<(String, Vec<(usize, usize)>)> {
        let mut cleaned: Vec<(char, usize)> = Vec::with_capacity(text.len() + 16);
        for (i, c) in text.chars().enumerate() {
            if c == '\0' || c == '\u{fffd}' || is_bert_control(c) {
                continue;
            }
            if is_bert_whitespace(c) {
                cleaned.push((' ', i));
            } else if is_cjk(c) {
                cleaned.extend([(' ', i), (c, i), (' ', i)]);
            } else {
                cleaned.push((c, i));
            }
        }
        let mut out = Vec::new();
        for run in cleaned.split(|(c, _)| c.is_whitespace()) {
            if run.is_empty() {
                continue;
            }
            let mut word: String = run.iter().map(|(c, _)| c).collect();
            let mut map: Vec<(usize, usize)> = run.iter().map(|&(_, i)| (i, i + 1)).collect();
            let whole = (run[0].1, run[run.len() - 1].1 + 1);
            if self.lower_case {
                let lowered = word.to_lowercase();
                map = expand(&word, &map, &lowered, whole, |c| c.to_lowercase().count());
                word = lowered;
            }
            if self.strip_accents {
                let stripped: String = word.nfd().filter(|c| !c.is_mark_nonspacing()).collect();
                map = expand(&word, &map, &stripped, whole, |c| {
                    c.nfd().filter(|d| !d.is_mark_nonspacing()).count()
                });
                word = stripped;
            }
            split_on_punctuation_mapped(&word, &map, &mut out);
        }
        out
    }
}

/// The source ranges of `to`'s characters when each character of `from` became `count(c)`
/// characters of `to`; when the counts do not add up, every character gets `whole`.
fn expand(
    from: &str,
    map: &[(usize, usize)],
    to: &str,
    whole: (usize, usize),
    count: impl Fn(char) -> usize,
) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(map.len());
    for (c, &range) in from.chars().zip(map) {
        out.extend(std::iter::repeat_n(range, count(c)));
    }
    let n = to.chars().count();
    if out.len() != n {
        out = vec![whole; n];
    }
    out
}

/// [`split_on_punctuation`] carrying each character's source range.
fn split_on_punctuation_mapped(
    word: &str,
    map: &[(usize, usize)],
    out: &mut Vec<(String, Vec<(usize, usize)>)>,
) {
    let chars: Vec<char> = word.chars().collect();
    let mut start = 0;
    let push_run = |from: usize, to: usize, out: &mut Vec<(String, Vec<(usize, usize)>)>| {
        let run = &chars[from..to];
        let mut k = 0;
        for part in run.split(|c| c.is_whitespace()) {
            if !part.is_empty() {
                out.push((
                    part.iter().collect(),
                    map[from + k..from + k + part.len()].to_vec(),
                ));
            }
            k += part.len() + 1;
        }
    };
    for (i, &c) in chars.iter().enumerate() {
        if is_bert_punctuation(c) {
            push_run(start, i, out);
            out.push((c.to_string(), vec![map[i]]));
            start = i + 1;
        }
    }
    push_run(start, chars.len(), out);
}

/// `_run_split_on_punc` followed by the final whitespace split: every punctuation character
/// alone, the runs between them as words.
fn split_on_punctuation(word: &str, out: &mut Vec<String>) {
    let mut start = 0;
    for (i, c) in word.char_indices() {
        if is_bert_punctuation(c) {
            push_words(&word[start..i], out);
            out.push(c.to_string());
            start = i + c.len_utf8();
        }
    }
    push_words(&word[start..], out);
}

/// Python re-splits the joined words on whitespace; lower-casing can create none, but the
/// accent strip keeps whatever it keeps, so split again to be exact.
fn push_words(run: &str, out: &mut Vec<String>) {
    out.extend(run.split_whitespace().map(str::to_owned));
}

/// BERT tokenizer: basic tokenization + WordPiece over a `vocab.txt`.
#[derive(Clone)]
pub struct BertTokenizer {
    pub(crate) vocab: Vocab,
    basic: BasicTokenizer,
    wordpiece: WordPiece,
    unk_id: u32,
}

impl std::fmt::Debug for BertTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertTokenizer")
            .field("vocab_size", &self.vocab.tokens.len())
            .field("basic", &self.basic)
            .field("max_word_chars", &self.wordpiece.max_input_chars_per_word)
            .finish()
    }
}

impl BertTokenizer {
    /// Builds the tokenizer; the error names what is missing.
    pub(crate) fn new(
        vocab: Vocab,
        options: &TokenizerOptions,
        unk_token: &str,
    ) -> Result<Self, String> {
        let unk_id = *vocab
            .ids
            .get(unk_token)
            .ok_or_else(|| format!("no `{unk_token}` line"))?;
        // The builder wants ahash's map; its serde form takes a plain one (from text: it
        // borrows its `type` tag).
        let config = serde_json::json!({
            "type": "WordPiece",
            "unk_token": unk_token,
            "continuing_subword_prefix": "##",
            "max_input_chars_per_word": options.max_word_chars,
            "vocab": &vocab.ids,
        });
        let wordpiece: WordPiece =
            serde_json::from_str(&config.to_string()).map_err(|e| e.to_string())?;
        Ok(Self {
            vocab,
            basic: BasicTokenizer {
                lower_case: options.lower_case,
                strip_accents: options.strip_accents.unwrap_or(options.lower_case),
            },
            wordpiece,
            unk_id,
        })
    }

    /// The basic step alone: the words WordPiece sees.
    pub fn basic_tokenize(&self, text: &str) -> Vec<String> {
        let mut words = Vec::new();
        self.basic.tokenize_into(text, &mut words);
        words
    }

    /// Tokens and ids of `text` with the character range `[start, end)` of `text` each came
    /// from (a `[UNK]` covers its whole word). Same tokens as [`Self::tokenize_with_ids`].
    pub fn tokenize_with_offsets(&self, text: &str) -> Vec<(String, u32, usize, usize)> {
        let mut out = Vec::new();
        for (word, map) in self.basic.words_with_offsets(text) {
            let span = |from: usize, to: usize| (map[from].0, map[to - 1].1);
            let (first, last) = span(0, map.len());
            match self.wordpiece.tokenize(&word) {
                Ok(tokens) => {
                    for t in tokens {
                        let from = word[..t.offsets.0].chars().count();
                        let to = from + word[t.offsets.0..t.offsets.1].chars().count();
                        let (start, end) = if from < to && to <= map.len() {
                            span(from, to)
                        } else {
                            (first, last)
                        };
                        out.push((t.value, t.id, start, end));
                    }
                }
                Err(_) => out.push((self.wordpiece.unk_token.clone(), self.unk_id, first, last)),
            }
        }
        out
    }

    /// Tokens and ids of `text`.
    pub fn tokenize_with_ids(&self, text: &str) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for word in self.basic_tokenize(text) {
            match self.wordpiece.tokenize(&word) {
                Ok(tokens) => out.extend(tokens.into_iter().map(|t| (t.value, t.id))),
                // Only a vocabulary without the unknown token fails, and `new` checked it.
                Err(_) => out.push((self.wordpiece.unk_token.clone(), self.unk_id)),
            }
        }
        out
    }
}
