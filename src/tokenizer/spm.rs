//! The sentencepiece unigram tokenizer of UER-py's word-based models
//! (`cluecorpussmall_spm.model`), without the C++ library.
//!
//! It follows google/sentencepiece step by step: `Normalizer::Normalize` (user-defined pieces
//! pass through whole, otherwise the longest rule of the precompiled charsmap, a Darts
//! double-array trie; leading, trailing and repeated blanks dropped; blanks escaped as `▁`; a
//! dummy `▁` prefix), then `unigram::Model::EncodeOptimized` (Viterbi over the piece scores,
//! user-defined pieces scored `length·max_score − 0.1` so they always win, unknown characters
//! scored `min_score − 10`, same tie-breaking and float widths), then
//! `PopulateSentencePieceText` (runs of unknown pieces merged into one). On top of that,
//! [`SpmTokenizer::tokenize`] applies UER-py's `encode_pieces` digit-comma rule.

use std::collections::{HashMap, HashSet};

use super::proto::{ModelProto, PieceType};

/// The escaped blank (U+2581).
pub const SPACE_SYMBOL: &str = "\u{2581}";

/// `kUnkPenalty` of unigram_model.cc.
const UNK_PENALTY: f32 = 10.0;

/// A sentencepiece unigram model ready to encode.
#[derive(Debug, Clone)]
pub struct SpmTokenizer {
    pieces: Vec<String>,
    scores: Vec<f32>,
    kinds: Vec<PieceType>,
    /// Normal, user-defined and unused pieces → id (the encoder's trie).
    lattice_vocab: HashMap<String, u32>,
    /// Every piece → id, control/unknown/byte pieces first (sentencepiece's `PieceToId`).
    piece_to_id: HashMap<String, u32>,
    /// Longest lattice piece in bytes.
    max_piece_bytes: usize,
    user_defined: UserDefinedMatcher,
    charsmap: Option<CharsMap>,
    unk_id: u32,
    min_score: f32,
    max_score: f32,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
}

/// A piece, its id and the byte ranges of the input text it covers.
type PieceRanges = (String, u32, Vec<(usize, usize)>);

impl SpmTokenizer {
    /// Builds the encoder from a parsed model; the error says what is unsupported or missing.
    pub(crate) fn from_proto(model: ModelProto) -> Result<Self, String> {
        if model.model_type != 1 {
            return Err(format!(
                "model_type {} is not unigram (1); only unigram models are supported",
                model.model_type
            ));
        }
        if model.byte_fallback {
            return Err("byte_fallback models are not supported".into());
        }
        if model.treat_whitespace_as_suffix {
            return Err("treat_whitespace_as_suffix models are not supported".into());
        }
        let charsmap = if model.precompiled_charsmap.is_empty() {
            if !model.normalizer_name.is_empty() && model.normalizer_name != "identity" {
                return Err(format!(
                    "normalizer `{}` has no precompiled_charsmap",
                    model.normalizer_name
                ));
            }
            None
        } else {
            Some(CharsMap::parse(&model.precompiled_charsmap)?)
        };

        let mut pieces = Vec::with_capacity(model.pieces.len());
        let mut scores = Vec::with_capacity(model.pieces.len());
        let mut kinds = Vec::with_capacity(model.pieces.len());
        let mut lattice_vocab = HashMap::with_capacity(model.pieces.len());
        let mut reserved = HashMap::new();
        let mut user_defined = Vec::new();
        let mut unk_id = None;
        let mut min_score = f32::MAX;
        let mut max_score = f32::MIN_POSITIVE; // FLT_MIN, as sentencepiece starts it
        let mut max_piece_bytes = 0;
        for (index, piece) in model.pieces.into_iter().enumerate() {
            let id = u32::try_from(index).map_err(|_| "too many pieces")?;
            if piece.piece.is_empty() {
                return Err(format!("piece {id} is empty"));
            }
            let in_lattice = matches!(
                piece.kind,
                PieceType::Normal | PieceType::UserDefined | PieceType::Unused
            );
            let map = if in_lattice {
                &mut lattice_vocab
            } else {
                &mut reserved
            };
            if map.insert(piece.piece.clone(), id).is_some() {
                return Err(format!("piece `{}` is defined twice", piece.piece));
            }
            if in_lattice {
                max_piece_bytes = max_piece_bytes.max(piece.piece.len());
            }
            match piece.kind {
                PieceType::Normal => {
                    min_score = min_score.min(piece.score);
                    max_score = max_score.max(piece.score);
                }
                PieceType::UserDefined => user_defined.push(piece.piece.clone()),
                PieceType::Unknown if unk_id.is_some() => {
                    return Err("more than one unknown piece".into());
                }
                PieceType::Unknown => unk_id = Some(id),
                _ => {}
            }
            pieces.push(piece.piece);
            scores.push(piece.score);
            kinds.push(piece.kind);
        }
        let unk_id = unk_id.ok_or("no unknown piece (type UNKNOWN)")?;
        let mut piece_to_id = reserved;
        for (piece, id) in &lattice_vocab {
            piece_to_id.entry(piece.clone()).or_insert(*id);
        }
        Ok(Self {
            pieces,
            scores,
            kinds,
            lattice_vocab,
            piece_to_id,
            max_piece_bytes,
            user_defined: UserDefinedMatcher::new(user_defined),
            charsmap,
            unk_id,
            min_score,
            max_score,
            add_dummy_prefix: model.add_dummy_prefix,
            remove_extra_whitespaces: model.remove_extra_whitespaces,
            escape_whitespaces: model.escape_whitespaces,
        })
    }

    /// Number of pieces (the vocabulary size).
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The unknown piece's id.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// sentencepiece's `PieceToId`: the piece's id, the unknown id for anything else.
    pub fn piece_to_id(&self, piece: &str) -> u32 {
        self.token_to_id(piece).unwrap_or(self.unk_id)
    }

    /// The piece's id, `None` when it is not a piece.
    pub fn token_to_id(&self, piece: &str) -> Option<u32> {
        self.piece_to_id.get(piece).copied()
    }

    /// The piece with this id.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// The score of the piece with this id.
    pub fn score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// The type of the piece with this id.
    pub fn piece_type(&self, id: u32) -> Option<PieceType> {
        self.kinds.get(id as usize).copied()
    }

    /// sentencepiece's `Normalizer::Normalize`: the string the lattice is built on.
    pub fn normalize(&self, input: &str) -> String {
        self.normalize_into(input, None)
    }

    /// [`Self::normalize`] with, for each character of the result, the range of characters
    /// of `input` it came from (the dummy prefix is empty, at the first kept character), as
    /// sentencepiece's `norm_to_orig` alignment.
    pub fn normalize_with_offsets(&self, input: &str) -> (String, Vec<(usize, usize)>) {
        let mut map = Vec::new();
        let out = self.normalize_into(input, Some(&mut map));
        (out, map)
    }

    fn normalize_into(&self, input: &str, mut map: Option<&mut Vec<(usize, usize)>>) -> String {
        let mut input = input;
        // Characters of the original input consumed so far.
        let mut pos = 0;
        let mut out = String::with_capacity(input.len() * 3);
        if self.remove_extra_whitespaces {
            while !input.is_empty() {
                let (normalized, consumed) = self.normalize_prefix(input);
                if normalized != " " {
                    break;
                }
                pos += input[..consumed].chars().count();
                input = &input[consumed..];
            }
        }
        if input.is_empty() {
            return out;
        }
        let space = if self.escape_whitespaces {
            SPACE_SYMBOL
        } else {
            " "
        };
        if self.add_dummy_prefix {
            out.push_str(space);
            if let Some(m) = map.as_deref_mut() {
                m.push((pos, pos));
            }
        }
        let mut is_prev_space = self.remove_extra_whitespaces;
        while !input.is_empty() {
            let (normalized, consumed) = self.normalize_prefix(input);
            let chars = input[..consumed].chars().count();
            let range = (pos, pos + chars);
            let mut sp = normalized;
            if is_prev_space {
                sp = sp.trim_start_matches(' ');
            }
            if !sp.is_empty() {
                let before = out.len();
                if self.escape_whitespaces {
                    for (i, part) in sp.split(' ').enumerate() {
                        if i > 0 {
                            out.push_str(SPACE_SYMBOL);
                        }
                        out.push_str(part);
                    }
                } else {
                    out.push_str(sp);
                }
                if let Some(m) = map.as_deref_mut() {
                    m.extend(std::iter::repeat_n(range, out[before..].chars().count()));
                }
                is_prev_space = sp.ends_with(' ');
            }
            pos += chars;
            input = &input[consumed..];
            if !self.remove_extra_whitespaces {
                is_prev_space = false;
            }
        }
        if self.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.truncate(out.len() - space.len());
                if let Some(m) = map.as_deref_mut() {
                    m.pop();
                }
            }
        }
        out
    }

    /// `Normalizer::NormalizePrefix`: the replacement of the longest rule at the start of
    /// `input` and how many bytes it consumes.
    fn normalize_prefix<'a>(&'a self, input: &'a str) -> (&'a str, usize) {
        if let Some(len) = self.user_defined.prefix_match(input) {
            return (&input[..len], len);
        }
        if let Some((len, replacement)) = self
            .charsmap
            .as_ref()
            .and_then(|map| map.longest_prefix(input.as_bytes()))
        {
            return (replacement, len);
        }
        let len = input.chars().next().map_or(0, char::len_utf8);
        (&input[..len], len)
    }

    /// `EncodeOptimized` + the unknown-run merge: pieces of an already normalized string.
    fn encode_normalized(&self, normalized: &str) -> Vec<(String, u32)> {
        #[derive(Clone, Copy)]
        struct Best {
            id: u32,
            score: f32,
            starts_at: Option<usize>,
        }
        let bytes = normalized.len();
        if bytes == 0 {
            return Vec::new();
        }
        let unk_score = self.min_score - UNK_PENALTY;
        let unset = Best {
            id: 0,
            score: 0.0,
            starts_at: None,
        };
        let mut best = vec![unset; bytes + 1];
        let boundaries: Vec<usize> = normalized
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(bytes))
            .collect();
        for (k, &start) in boundaries[..boundaries.len() - 1].iter().enumerate() {
            let till_here = best[start].score;
            let char_end = boundaries[k + 1];
            let mut has_single_node = false;
            for &end in &boundaries[k + 1..] {
                let length = end - start;
                if length > self.max_piece_bytes {
                    break;
                }
                let Some(&id) = self.lattice_vocab.get(&normalized[start..end]) else {
                    continue;
                };
                let kind = self.kinds[id as usize];
                if kind == PieceType::Unused {
                    continue;
                }
                // sentencepiece computes the user-defined bonus in double precision.
                let candidate = if kind == PieceType::UserDefined {
                    (length as f32 * self.max_score) as f64 - 0.1 + till_here as f64
                } else {
                    (self.scores[id as usize] + till_here) as f64
                };
                let target = &mut best[end];
                if target.starts_at.is_none() || candidate > target.score as f64 {
                    *target = Best {
                        id,
                        score: candidate as f32,
                        starts_at: Some(start),
                    };
                }
                if end == char_end {
                    has_single_node = true;
                }
            }
            if !has_single_node {
                let candidate = unk_score + till_here;
                let target = &mut best[char_end];
                if target.starts_at.is_none() || candidate > target.score {
                    *target = Best {
                        id: self.unk_id,
                        score: candidate,
                        starts_at: Some(start),
                    };
                }
            }
        }
        let mut path = Vec::new();
        let mut end = bytes;
        while end > 0 {
            let node = best[end];
            let start = node.starts_at.unwrap_or(0);
            path.push((start, end, node.id));
            end = start;
        }
        path.reverse();
        let mut out: Vec<(String, u32)> = Vec::with_capacity(path.len());
        let mut prev_unk = false;
        for (start, end, id) in path {
            let is_unk = id == self.unk_id;
            match out.last_mut() {
                Some(last) if prev_unk && is_unk => last.0.push_str(&normalized[start..end]),
                _ => out.push((normalized[start..end].to_owned(), id)),
            }
            prev_unk = is_unk;
        }
        out
    }

    /// sentencepiece's `EncodeAsPieces` with ids: pieces exactly as the C++ library gives them.
    pub fn encode_as_pieces(&self, text: &str) -> Vec<(String, u32)> {
        self.encode_normalized(&self.normalize(text))
    }

    /// UER-py's `encode_pieces`: [`Self::encode_as_pieces`], except that a piece ending in a
    /// digit and `,` is re-encoded without its `▁` (which, under Python 3, gets the dummy
    /// prefix back) followed by a separate `,`.
    pub fn tokenize_with_ids(&self, text: &str) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for (piece, id) in self.encode_as_pieces(text) {
            let mut rev = piece.chars().rev();
            let digit_comma =
                rev.next() == Some(',') && rev.next().is_some_and(super::bert::is_python_digit);
            if digit_comma {
                let head = &piece[..piece.len() - 1];
                out.extend(self.encode_as_pieces(&head.replace(SPACE_SYMBOL, "")));
                out.push((",".to_owned(), self.piece_to_id(",")));
            } else {
                out.push((piece, id));
            }
        }
        out
    }

    /// [`Self::tokenize_with_ids`] with the range of characters of `text` each piece came
    /// from (`[start, end)`; a lone dummy-prefix `▁` is empty).
    pub fn tokenize_with_offsets(&self, text: &str) -> Vec<(String, u32, usize, usize)> {
        let mut out = Vec::new();
        for (piece, id, ranges) in self.pieces_with_ranges(text) {
            let mut rev = piece.chars().rev();
            let digit_comma =
                rev.next() == Some(',') && rev.next().is_some_and(super::bert::is_python_digit);
            if !digit_comma {
                let (start, end) = cover(&ranges);
                out.push((piece, id, start, end));
                continue;
            }
            // The head without its `▁`, each kept character with its source range.
            let head: Vec<(char, (usize, usize))> = piece
                .chars()
                .zip(ranges.iter().copied())
                .take(ranges.len().saturating_sub(1))
                .filter(|&(c, _)| c.to_string() != SPACE_SYMBOL)
                .collect();
            let head_text: String = head.iter().map(|(c, _)| c).collect();
            for (sub, sub_id, sub_ranges) in self.pieces_with_ranges(&head_text) {
                let whole = cover(&ranges);
                let to_source = |&(a, b): &(usize, usize)| {
                    let start = head.get(a).map_or(whole.1, |h| h.1.0);
                    if a >= b {
                        return (start, start);
                    }
                    (start, head.get(b - 1).map_or(whole.1, |h| h.1.1))
                };
                let mapped: Vec<(usize, usize)> = sub_ranges.iter().map(to_source).collect();
                let (start, end) = cover(&mapped);
                out.push((sub, sub_id, start, end));
            }
            let comma = ranges.last().copied().unwrap_or_default();
            out.push((",".to_owned(), self.piece_to_id(","), comma.0, comma.1));
        }
        out
    }

    /// [`Self::encode_as_pieces`] with the source ranges of each piece's characters.
    fn pieces_with_ranges(&self, text: &str) -> Vec<PieceRanges> {
        let (normalized, map) = self.normalize_with_offsets(text);
        let mut at = 0;
        self.encode_normalized(&normalized)
            .into_iter()
            .map(|(piece, id)| {
                let n = piece.chars().count();
                let ranges = map.get(at..at + n).map(<[_]>::to_vec).unwrap_or_default();
                at += n;
                (piece, id, ranges)
            })
            .collect()
    }

    /// UER-py's pieces of `text`.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        self.tokenize_with_ids(text)
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    /// UER-py's ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.tokenize_with_ids(text)
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }
}

/// The smallest range covering `ranges` (empty ones count only where nothing else does).
fn cover(ranges: &[(usize, usize)]) -> (usize, usize) {
    let full = ranges.iter().filter(|r| r.0 < r.1);
    match (full.clone().map(|r| r.0).min(), full.map(|r| r.1).max()) {
        (Some(start), Some(end)) => (start, end),
        _ => ranges.first().copied().unwrap_or_default(),
    }
}

/// sentencepiece's `PrefixMatcher` over the user-defined pieces: longest match.
#[derive(Debug, Clone)]
struct UserDefinedMatcher {
    pieces: HashSet<String>,
    first_bytes: [bool; 256],
    max_len: usize,
}

impl UserDefinedMatcher {
    fn new(pieces: Vec<String>) -> Self {
        let mut first_bytes = [false; 256];
        let mut max_len = 0;
        for piece in &pieces {
            first_bytes[piece.as_bytes()[0] as usize] = true;
            max_len = max_len.max(piece.len());
        }
        Self {
            pieces: pieces.into_iter().collect(),
            first_bytes,
            max_len,
        }
    }

    /// Byte length of the longest user-defined piece `input` starts with.
    fn prefix_match(&self, input: &str) -> Option<usize> {
        let first = *input.as_bytes().first()?;
        if !self.first_bytes[first as usize] {
            return None;
        }
        let limit = self.max_len.min(input.len());
        (1..=limit)
            .rev()
            .find(|&len| input.is_char_boundary(len) && self.pieces.contains(&input[..len]))
    }
}

/// The precompiled charsmap: a Darts-clone double array over UTF-8 bytes whose values are
/// offsets of NUL-terminated replacements in a string blob.
#[derive(Debug, Clone)]
struct CharsMap {
    units: Vec<u32>,
    normalized: Vec<u8>,
}

impl CharsMap {
    fn parse(blob: &[u8]) -> Result<Self, String> {
        let size_bytes: [u8; 4] = blob
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or("precompiled_charsmap shorter than its header")?;
        let trie_len = u32::from_le_bytes(size_bytes) as usize;
        let trie = blob
            .get(4..4 + trie_len)
            .filter(|t| t.len() % 4 == 0 && !t.is_empty())
            .ok_or("precompiled_charsmap trie size runs past the blob")?;
        let units = trie
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Self {
            units,
            normalized: blob[4 + trie_len..].to_vec(),
        })
    }

    /// The longest rule matching a prefix of `key`: (bytes consumed, replacement).
    fn longest_prefix(&self, key: &[u8]) -> Option<(usize, &str)> {
        let unit = |pos: usize| self.units.get(pos).copied();
        let offset = |u: u32| ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize;
        let has_leaf = |u: u32| (u >> 8) & 1 == 1;
        let label = |u: u32| u & ((1 << 31) | 0xff);
        let value = |u: u32| (u & ((1 << 31) - 1)) as usize;

        let mut node = offset(unit(0)?);
        let mut found = None;
        for (i, &byte) in key.iter().enumerate() {
            if byte == 0 {
                break;
            }
            node ^= byte as usize;
            let u = unit(node)?;
            if label(u) != byte as u32 {
                break;
            }
            node ^= offset(u);
            if has_leaf(u) {
                found = Some((i + 1, value(unit(node)?)));
            }
        }
        let (len, start) = found?;
        let tail = self.normalized.get(start..)?;
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        // A rule that cuts a character in two or yields invalid UTF-8 is ignored.
        let replacement = std::str::from_utf8(&tail[..end]).ok()?;
        std::str::from_utf8(&key[..len]).ok()?;
        Some((len, replacement))
    }
}
