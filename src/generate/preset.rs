//! Prompt formats of the GPT-2 zoo (poem, couplet, lyric, ancient, plain) and of UER-py
//! 2019's GPT (raw: no `[CLS]` first): how the user's text becomes the prompt the weights
//! were trained on, when generation stops, and how the output is cleaned. The table is data;
//! the registry's entries name their default preset through [`ENTRY_PRESETS`] and carry the
//! card's length and sampling defaults; other weights get their family's
//! ([`FAMILY_PRESETS`]).

use super::GenerateError;
use crate::checkpoint::Checkpoint;
use crate::convert::Layout;
use crate::tokenizer::Tokenizer;

/// What to do with the continuation after generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Keep it all.
    None,
    /// Couplets: the lower line has as many tokens as the upper line.
    MatchUpper,
}

/// One prompt format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// `poem`, `couplet`, `lyric`, `ancient` or `plain`.
    pub name: &'static str,
    /// `{text}` is the user's text, `{spaced}` the same with one space between characters
    /// (as the model cards write prompts; the tokenizer drops those spaces again). No
    /// `[CLS]`: [`Preset::prompt_ids`] puts it first when `cls_first`.
    pub template: &'static str,
    /// `[CLS]` goes before the prompt (UER-py's generate_lm, 2020 on); the 2019
    /// `scripts/generate.py` fed the prompt's tokens alone.
    pub cls_first: bool,
    /// The training data ended each sample with `[SEP]`, so generation stops there.
    pub stop_at_sep: bool,
    pub cut: Cut,
    /// Separator printed between the user's text and the continuation.
    pub joiner: &'static str,
    /// One line for `--help` and errors.
    pub about: &'static str,
}

/// Every preset.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "plain",
        template: "{text}",
        cls_first: true,
        stop_at_sep: false,
        cut: Cut::None,
        joiner: "",
        about: "the text as is; generate to --max-length (UER-py's generate_lm)",
    },
    Preset {
        name: "poem",
        template: "{spaced}",
        cls_first: true,
        stop_at_sep: true,
        cut: Cut::None,
        joiner: "",
        about: "the first line of a poem (e.g. 梅山如积翠，); stops at [SEP]",
    },
    Preset {
        name: "couplet",
        template: "{spaced} -",
        cls_first: true,
        stop_at_sep: true,
        cut: Cut::MatchUpper,
        joiner: " - ",
        about: "the upper line (e.g. 丹枫江冷人初去); writes a lower line of the same length",
    },
    Preset {
        name: "lyric",
        template: "{text}",
        cls_first: true,
        stop_at_sep: false,
        cut: Cut::None,
        joiner: "",
        about: "a first line of lyrics",
    },
    Preset {
        name: "ancient",
        template: "{text}",
        cls_first: true,
        stop_at_sep: false,
        cut: Cut::None,
        joiner: "",
        about: "the opening words of a classical text (e.g. 当是时)",
    },
    Preset {
        name: "raw",
        template: "{text}",
        cls_first: false,
        stop_at_sep: false,
        cut: Cut::None,
        joiner: "",
        about: "the text as is without [CLS] first; generate to --max-length (UER-py 2019's scripts/generate.py, for the 2019 GPT)",
    },
];

/// The default preset of each registry GPT-2 entry (others get `plain`).
pub const ENTRY_PRESETS: &[(&str, &str)] = &[
    ("gpt2-chinese-poem", "poem"),
    ("gpt2-chinese-couplet", "couplet"),
    ("gpt2-chinese-lyric", "lyric"),
    ("gpt2-chinese-ancient", "ancient"),
    ("gpt2-chinese-cluecorpussmall", "plain"),
    ("gpt2-distil-chinese-cluecorpussmall", "plain"),
    ("mixed_corpus_gpt", "raw"),
    ("reviews_lstm_lm", "raw"),
];

/// The default preset of weights of a family, when they are not a registry entry (others
/// get `plain`): the 2019 GPT and LSTM LM were trained and sampled without `[CLS]` first.
pub const FAMILY_PRESETS: &[(Layout, &str)] =
    &[(Layout::LegacyGpt, "raw"), (Layout::LegacyLstm, "raw")];

impl Preset {
    /// Looks a preset up by name.
    pub fn get(name: &str) -> Result<&'static Preset, GenerateError> {
        PRESETS
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| GenerateError::Preset {
                name: name.to_string(),
                known: PRESETS
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The default preset of the registry entry `entry_name` (`plain` if it has none).
    pub fn for_entry(entry_name: &str) -> &'static Preset {
        let name = ENTRY_PRESETS
            .iter()
            .find(|(e, _)| *e == entry_name)
            .map_or("plain", |(_, p)| *p);
        Preset::get(name).unwrap_or(&PRESETS[0])
    }

    /// The default preset of `weights` opened outside the registry: by the family of their
    /// keys ([`FAMILY_PRESETS`]), else `plain`.
    pub fn for_weights(weights: &Checkpoint) -> &'static Preset {
        let name = crate::convert::detect(weights)
            .ok()
            .and_then(|d| FAMILY_PRESETS.iter().find(|(f, _)| *f == d.family))
            .map_or("plain", |(_, p)| *p);
        Preset::get(name).unwrap_or(&PRESETS[0])
    }

    /// The prompt's ids for the user's `text`: [`Self::format_prompt`] tokenized, with
    /// `[CLS]` first when the preset says so ([`Self::cls_first`]).
    pub fn prompt_ids(&self, tok: &Tokenizer, text: &str) -> Vec<u32> {
        let prompt = self.format_prompt(text);
        if self.cls_first {
            super::prompt_ids(tok, &prompt)
        } else {
            tok.encode(&prompt)
        }
    }

    /// The user's text as this preset's prompt (without `[CLS]`). A leading `[CLS]` the user
    /// copied from a model card is dropped, since the generator adds it.
    pub fn format_prompt(&self, text: &str) -> String {
        crate::registry::fill_template(self.template, user_text(text))
    }

    /// The most new tokens this preset wants after the user's `text`: a couplet's lower
    /// line has as many tokens as the upper line.
    pub fn new_token_limit(&self, tok: &Tokenizer, text: &str) -> Option<usize> {
        match self.cut {
            Cut::None => None,
            Cut::MatchUpper => Some(tok.encode(user_text(text)).len()),
        }
    }

    /// The readable output for the user's `text` and the generated continuation ids
    /// (prompt excluded): specials dropped, WordPiece joined, no spaces between CJK.
    pub fn render(&self, tok: &Tokenizer, text: &str, continuation: &[u32]) -> String {
        let upper = clean_text(tok, &tok.encode(user_text(text)));
        format!("{upper}{}{}", self.joiner, clean_text(tok, continuation))
    }
}

impl Preset {
    /// The user's text as the upper line / first line: without surrounding blanks and a
    /// card-style leading `[CLS]`.
    pub fn user_text<'a>(&self, text: &'a str) -> &'a str {
        user_text(text)
    }
}

/// The user's text without surrounding blanks and a card-style leading `[CLS]`.
fn user_text(text: &str) -> &str {
    let t = text.trim();
    t.strip_prefix(crate::tokenizer::CLS_TOKEN)
        .unwrap_or(t)
        .trim_start()
}

/// Readable text of `ids` without `[CLS]`, `[SEP]` and `[PAD]`.
pub fn clean_text(tok: &Tokenizer, ids: &[u32]) -> String {
    let s = tok.special_ids();
    let kept: Vec<u32> = ids
        .iter()
        .copied()
        .filter(|&i| i != s.cls && i != s.sep && i != s.pad)
        .collect();
    tok.decode(&kept)
}

/// UER-py's output line: every token of the sequence joined without spaces (`[CLS]` first,
/// `##` pieces keep their `##`).
pub fn uer_text(tok: &Tokenizer, ids: &[u32]) -> String {
    tok.ids_to_tokens(ids).concat()
}

/// Turns a growing id sequence into printable pieces for `--stream`: each call returns the
/// text the new id adds to the cleaned output.
#[derive(Debug, Default, Clone)]
pub struct TextStream {
    ids: Vec<u32>,
    printed: String,
}

impl TextStream {
    /// Adds `id` and returns what to print now (may be empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.ids.push(id);
        let text = clean_text(tok, &self.ids);
        // A piece that rewrites what was printed (rare: spacing between ASCII words) is
        // not printed; the final text is.
        let piece = text
            .strip_prefix(self.printed.as_str())
            .map(str::to_string)
            .unwrap_or_default();
        self.printed = text;
        piece
    }
}
