//! Constrained decoding: which tokens may come next, so that a couplet's lower line fits its
//! upper line and a poem keeps its line length.
//!
//! A [`Constraint`] is data: a list of [`Rule`]s, one per new token (a couplet: one per
//! character of the upper line, then `[SEP]`), or a line length (a poem: `n` Chinese
//! characters, a line-ending mark, again). Before each token is sampled, every token the rule
//! does not allow gets logit −∞ ([`Constraint::apply`]); sampling (top-k, top-p,
//! temperature) then runs over what is left, so UER-py's sampling is unchanged where the
//! constraint allows everything the model wanted.
//!
//! Rules are over tokens that are exactly one character: a [`Class::Hanzi`] slot takes a
//! single CJK ideograph, a punctuation character of the upper line is required as that very
//! token ([`Rule::Token`], or any single punctuation token when the vocabulary lacks it).

use super::GenerateError;
use crate::tokenizer::{Tokenizer, is_bert_punctuation, is_cjk};

/// Marks that may end a poem's line.
pub const LINE_ENDS: &[&str] = &["，", "。", "！", "？", "；"];
/// Line ends after which a poem may stop (`[SEP]`).
pub const POEM_ENDS: &[&str] = &["。", "！", "？"];

/// A set of one-character tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// One CJK ideograph.
    Hanzi,
    /// One punctuation character.
    Punctuation,
    /// One of [`LINE_ENDS`].
    LineEnd,
}

/// What the next token may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Exactly this token.
    Token(u32),
    /// Any token of the class.
    Class(Class),
    /// Any token of the class, or the stop token.
    ClassOrStop(Class),
    /// Only the stop token: the text is complete.
    Stop,
}

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    /// The i-th new token follows `rules[i]`; past the end, only the stop token.
    Slots(Vec<Rule>),
    /// Lines of `n` Hanzi, each ended by a [`Class::LineEnd`]; `carry` Hanzi of the first
    /// line are already in the prompt. The stop token may follow a [`POEM_ENDS`] mark.
    Lines { n: usize, carry: usize },
}

/// A decoding constraint with the vocabulary's class masks.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    shape: Shape,
    /// `masks[class][id]`: the token is in the class.
    hanzi: Vec<bool>,
    punctuation: Vec<bool>,
    line_end: Vec<bool>,
    poem_end: Vec<bool>,
    stop: u32,
}

impl Constraint {
    fn new(tok: &Tokenizer, shape: Shape) -> Self {
        let n = tok.vocab_size();
        let single = |id: usize| -> Option<char> {
            let t = tok.id_to_token(id as u32)?;
            let mut chars = t.chars();
            let c = chars.next()?;
            chars.next().is_none().then_some(c)
        };
        let mask = |keep: &dyn Fn(char, &str) -> bool| -> Vec<bool> {
            (0..n)
                .map(|id| {
                    single(id).is_some_and(|c| keep(c, tok.id_to_token(id as u32).unwrap_or("")))
                })
                .collect()
        };
        Constraint {
            hanzi: mask(&|c, _| is_cjk(c)),
            punctuation: mask(&|c, _| is_bert_punctuation(c)),
            line_end: mask(&|_, t| LINE_ENDS.contains(&t)),
            poem_end: mask(&|_, t| POEM_ENDS.contains(&t)),
            stop: tok.sep_id(),
            shape,
        }
    }

    /// A couplet's lower line for `upper`: as many characters as the upper line (blanks
    /// not counted), its punctuation at the same positions, every other character a Chinese
    /// character, then the stop token (`[SEP]`).
    pub fn match_line(tok: &Tokenizer, upper: &str) -> Result<Self, GenerateError> {
        let rules: Vec<Rule> = upper
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| {
                if is_bert_punctuation(c) {
                    tok.token_to_id(&c.to_string())
                        .map_or(Rule::Class(Class::Punctuation), Rule::Token)
                } else {
                    Rule::Class(Class::Hanzi)
                }
            })
            .collect();
        if rules.is_empty() {
            return Err(GenerateError::Constraint {
                reason: "the upper line is empty; give the couplet's first line".into(),
            });
        }
        let c = Self::new(tok, Shape::Slots(rules));
        c.check_vocab()?;
        Ok(c)
    }

    /// Lines of `n` Chinese characters, each ended by one of [`LINE_ENDS`], continuing
    /// `prompt` (its Hanzi after its last line end count towards the first line); the stop
    /// token may come after `。！？`.
    pub fn lines(tok: &Tokenizer, n: usize, prompt: &str) -> Result<Self, GenerateError> {
        if n == 0 {
            return Err(GenerateError::Option {
                option: "line-length",
                value: "0".into(),
                expected: "characters per line, e.g. 5 or 7",
            });
        }
        let tail = prompt
            .rsplit(|c: char| LINE_ENDS.contains(&c.to_string().as_str()))
            .next()
            .unwrap_or("");
        let carry = tail.chars().filter(|&c| is_cjk(c)).count();
        if carry > n {
            return Err(GenerateError::Constraint {
                reason: format!(
                    "the prompt's last line has {carry} characters, more than --line-length {n}; end it with one of {}",
                    LINE_ENDS.concat()
                ),
            });
        }
        let c = Self::new(tok, Shape::Lines { n, carry });
        c.check_vocab()?;
        Ok(c)
    }

    /// How many new tokens the constraint needs at least (a couplet's lower line, without
    /// the stop token); `None` for poems.
    pub fn min_new_tokens(&self) -> Option<usize> {
        match &self.shape {
            Shape::Slots(rules) => Some(rules.len()),
            Shape::Lines { .. } => None,
        }
    }

    fn check_vocab(&self) -> Result<(), GenerateError> {
        let empty = |m: &[bool], what: &str| {
            if m.iter().any(|&b| b) {
                Ok(())
            } else {
                Err(GenerateError::Constraint {
                    reason: format!("the vocabulary has no single-character {what} token"),
                })
            }
        };
        empty(&self.hanzi, "Chinese")?;
        match &self.shape {
            Shape::Slots(rules) if rules.contains(&Rule::Class(Class::Punctuation)) => {
                empty(&self.punctuation, "punctuation")
            }
            Shape::Lines { .. } => empty(&self.line_end, "line-ending (，。！？；)"),
            _ => Ok(()),
        }
    }

    /// The rule for the next token after `generated` (the new tokens so far).
    pub fn rule(&self, generated: &[u32]) -> Rule {
        match &self.shape {
            Shape::Slots(rules) => rules.get(generated.len()).copied().unwrap_or(Rule::Stop),
            Shape::Lines { n, carry } => {
                let last_end = generated
                    .iter()
                    .rposition(|&id| self.line_end.get(id as usize) == Some(&true));
                let in_line = match last_end {
                    Some(p) => generated.len() - p - 1,
                    None => carry + generated.len(),
                };
                if in_line >= *n {
                    Rule::Class(Class::LineEnd)
                } else if in_line == 0
                    && last_end.is_some_and(|p| self.poem_end[generated[p] as usize])
                {
                    Rule::ClassOrStop(Class::Hanzi)
                } else {
                    Rule::Class(Class::Hanzi)
                }
            }
        }
    }

    /// Sets every logit the next token's rule forbids to −∞.
    pub fn apply(&self, logits: &mut [f32], generated: &[u32]) {
        let rule = self.rule(generated);
        let (class, stop_ok) = match rule {
            Rule::Token(id) => {
                for (i, l) in logits.iter_mut().enumerate() {
                    if i != id as usize {
                        *l = f32::NEG_INFINITY;
                    }
                }
                return;
            }
            Rule::Stop => (None, true),
            Rule::Class(c) => (Some(c), false),
            Rule::ClassOrStop(c) => (Some(c), true),
        };
        let mask = class.map(|c| match c {
            Class::Hanzi => &self.hanzi,
            Class::Punctuation => &self.punctuation,
            Class::LineEnd => &self.line_end,
        });
        for (i, l) in logits.iter_mut().enumerate() {
            let allowed = (stop_ok && i == self.stop as usize)
                || mask.is_some_and(|m| m.get(i) == Some(&true));
            if !allowed {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}
