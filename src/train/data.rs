//! Classification data as UER-py's run_classifier reads it: a TSV with a header naming the
//! columns (`label`, `text_a`, optional `text_b`), checked line by line before any training
//! starts, and encoded to fixed-length id/segment rows.
//!
//! Encoding (UER-py `read_dataset`): pairs are `[CLS] a [SEP]` (segment 1) + `b [SEP]`
//! (segment 2). Single sentences are `[CLS] a [SEP]`, segment 1: UER-py added the trailing
//! `[SEP]` on 2022-05-23 (commit 012374b, "fix #314"), and every run_classifier from then to
//! the naming change of 2023-07 (b80a5e2) — the code that loads the zoo's v1 names and that
//! made `finetune_ref.json` as the last 2022 state of the repository — has it, as does its
//! run_classifier_infer. Sequences are cut to `seq_length` (the final `[SEP]` may be cut) and
//! padded with `[PAD]`, segment 0. A classifier trained by transformers is read with its cut
//! instead ([`Dataset::encode_with`], [`Truncation::Hf`]: the texts are cut, every `[SEP]` kept).

use super::TrainError;
use crate::tokenizer::{Tokenizer, Truncation};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One row of a classification TSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The gold label, when the file has a `label` column.
    pub label: Option<usize>,
    pub text_a: String,
    pub text_b: Option<String>,
}

/// A parsed TSV.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub path: PathBuf,
    pub examples: Vec<Example>,
}

impl Dataset {
    /// Reads `path`; `need_labels` makes the `label` column mandatory. Errors name the file and
    /// the 1-based line (wrong column count, non-integer label, missing columns, no rows).
    pub fn read(path: &Path, need_labels: bool) -> Result<Dataset, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::Io {
            path: path.into(),
            source: e,
        })?;
        Self::parse(path, &text, need_labels)
    }

    /// Parses TSV text (see [`Dataset::read`]); `path` only names the source in errors.
    pub fn parse(path: &Path, text: &str, need_labels: bool) -> Result<Dataset, TrainError> {
        let bad = |line: usize, message: String| TrainError::Data {
            path: path.into(),
            line,
            message,
        };
        let mut lines = text.lines().enumerate();
        let header = match lines.next() {
            Some((_, h)) if !h.trim().is_empty() => h,
            _ => {
                return Err(bad(
                    1,
                    "the file is empty; expected a header line such as `label<TAB>text_a`".into(),
                ));
            }
        };
        // A UTF-8 byte order mark (as spreadsheet exports write) is not part of the first name.
        let header = header.strip_prefix('\u{feff}').unwrap_or(header);
        let columns: Vec<&str> = header.trim_end_matches('\r').split('\t').collect();
        let find = |name: &str| columns.iter().position(|c| *c == name);
        let (label, text_a, text_b) = (find("label"), find("text_a"), find("text_b"));
        // A `label` column that is not asked for is not read (predict's input may carry any
        // labels, or none that parse).
        let label = label.filter(|_| need_labels);
        let Some(text_a) = text_a else {
            return Err(bad(
                1,
                format!(
                    "the header has no `text_a` column (columns: {})",
                    columns.join(", ")
                ),
            ));
        };
        if need_labels && label.is_none() {
            return Err(bad(
                1,
                format!(
                    "the header has no `label` column (columns: {})",
                    columns.join(", ")
                ),
            ));
        }
        let mut examples = Vec::new();
        for (i, line) in lines {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() != columns.len() {
                return Err(bad(
                    i + 1,
                    format!(
                        "{} tab-separated columns, the header has {}",
                        fields.len(),
                        columns.len()
                    ),
                ));
            }
            let label = match label {
                Some(c) => Some(fields[c].trim().parse::<usize>().map_err(|_| {
                    bad(
                        i + 1,
                        format!("label `{}` is not a non-negative integer", fields[c]),
                    )
                })?),
                None => None,
            };
            examples.push(Example {
                label,
                text_a: fields[text_a].to_string(),
                text_b: text_b.map(|c| fields[c].to_string()),
            });
        }
        if examples.is_empty() {
            return Err(bad(1, "no data rows after the header".into()));
        }
        Ok(Dataset {
            path: path.into(),
            examples,
        })
    }

    /// The first `n` rows (all when `n` is `None`).
    pub fn truncated(mut self, n: Option<usize>) -> Self {
        if let Some(n) = n {
            self.examples.truncate(n);
        }
        self
    }

    /// The number of classes as UER-py counts it (distinct labels), checked to be `0..n`.
    pub fn labels_num(&self) -> Result<usize, TrainError> {
        let set: BTreeSet<usize> = self.examples.iter().filter_map(|e| e.label).collect();
        let n = set.len();
        if let Some(&max) = set.last()
            && max >= n
        {
            // At most a few missing labels are named: a label of 10^11 must not build a
            // list (or a message) of 10^11 entries.
            const SHOWN: usize = 5;
            let mut missing: Vec<String> = (0..=max)
                .filter(|l| !set.contains(l))
                .take(SHOWN + 1)
                .map(|l| l.to_string())
                .collect();
            if missing.len() > SHOWN {
                missing[SHOWN] = format!("{} more", max + 1 - n - SHOWN);
            }
            let row = self
                .examples
                .iter()
                .position(|e| e.label == Some(max))
                .map_or(0, |i| i + 1);
            return Err(TrainError::Labels {
                path: self.path.clone(),
                message: format!(
                    "labels must be 0..{} (the number of distinct labels is {n}), but row {row} has label {max} and the file lacks {}",
                    n.saturating_sub(1),
                    missing.join(", ")
                ),
            });
        }
        Ok(n)
    }

    /// Checks that every label is below `labels_num` (dev/test against the train file).
    pub fn check_labels(&self, labels_num: usize) -> Result<(), TrainError> {
        match self
            .examples
            .iter()
            .position(|e| e.label.is_some_and(|l| l >= labels_num))
        {
            Some(i) => Err(TrainError::Labels {
                path: self.path.clone(),
                message: format!(
                    "row {} has label {}, but the training file has only {labels_num} labels (0..{})",
                    i + 1,
                    self.examples[i].label.unwrap_or(0),
                    labels_num - 1
                ),
            }),
            None => Ok(()),
        }
    }

    /// Encodes every row to `seq_length` ids and segments, cut as UER-py's run_classifier
    /// cuts ([`Truncation::Uer`]).
    pub fn encode(&self, tok: &Tokenizer, seq_length: usize) -> Encoded {
        self.encode_with(tok, seq_length, Truncation::Uer)
    }

    /// Encodes every row to `seq_length` ids and segments, cut by `truncation` (UER-py's or
    /// transformers' way, see [`Truncation`]).
    pub fn encode_with(
        &self,
        tok: &Tokenizer,
        seq_length: usize,
        truncation: Truncation,
    ) -> Encoded {
        let mut out = Encoded {
            seq: seq_length,
            ..Default::default()
        };
        for e in &self.examples {
            let enc = tok.encode_example(&e.text_a, e.text_b.as_deref(), seq_length, truncation);
            out.ids.extend(enc.ids.iter().map(|&i| i64::from(i)));
            out.segment
                .extend(enc.segments.iter().map(|&s| i64::from(s)));
            out.labels.push(e.label.map_or(-1, |l| l as i64));
        }
        out
    }
}

/// Encoded rows, row-major `[rows, seq]`; `labels[i]` is −1 when unknown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded {
    pub ids: Vec<i64>,
    pub segment: Vec<i64>,
    pub labels: Vec<i64>,
    pub seq: usize,
}

impl Encoded {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The rows at `order` (ids, segments, labels), for one batch.
    pub fn gather(&self, order: &[usize]) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
        let s = self.seq;
        let mut ids = Vec::with_capacity(order.len() * s);
        let mut seg = Vec::with_capacity(order.len() * s);
        let mut labels = Vec::with_capacity(order.len());
        for &i in order {
            ids.extend_from_slice(&self.ids[i * s..(i + 1) * s]);
            seg.extend_from_slice(&self.segment[i * s..(i + 1) * s]);
            labels.push(self.labels[i]);
        }
        (ids, seg, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Dataset, TrainError> {
        Dataset::parse(Path::new("x.tsv"), text, true)
    }

    #[test]
    fn reads_columns_by_name() {
        let d = parse("text_a\tlabel\nhello\t1\r\nworld\t0\n").unwrap();
        assert_eq!(d.examples.len(), 2);
        assert_eq!(
            d.examples[0],
            Example {
                label: Some(1),
                text_a: "hello".into(),
                text_b: None
            }
        );
        assert_eq!(d.labels_num().unwrap(), 2);
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let e = parse("label\ttext_a\n1\tok\n0\ttoo\tmany\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.tsv") && e.contains("line 3") && e.contains("3 tab-separated columns"),
            "{e}"
        );
        let e = parse("label\ttext_a\n1\tok\nx\tbad\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("label `x`"), "{e}");
        let e = parse("").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = parse("label\ttext_a\n").unwrap_err().to_string();
        assert!(e.contains("no data rows"), "{e}");
        let e = parse("label\ttext\n1\ta\n").unwrap_err().to_string();
        assert!(e.contains("no `text_a`"), "{e}");
    }

    #[test]
    fn labels_must_start_at_zero() {
        let d = parse("label\ttext_a\n1\ta\n2\tb\n").unwrap();
        let e = d.labels_num().unwrap_err().to_string();
        assert!(e.contains("lacks 0"), "{e}");
        let d = parse("label\ttext_a\n0\ta\n1\tb\n").unwrap();
        let dev = parse("label\ttext_a\n2\ta\n").unwrap();
        assert!(dev.check_labels(d.labels_num().unwrap()).is_err());
    }
}
