//! Shape and dtype checks of a UER-named checkpoint before anything is written: every
//! tensor a row of this table names must have the shape its symbols give, each symbol one
//! size throughout the file (`H` hidden, `F` feed-forward, `E` embedding, `V` vocabulary,
//! `P` positions), bound from the UER config and the vocabulary when they are known, else by
//! the first tensor that uses it. A file that transformers or UER-py would refuse (a
//! `[128, 129]` query, an empty or integer weight, an embedding of the wrong vocabulary) is
//! refused here with the key and both shapes.
//!
//! Rows match key *suffixes*, so one row covers every layer, both UER naming generations
//! where they agree, and ALBERT's shared layer.

use super::ConvertError;
use super::names::SHAPES;
use crate::checkpoint::{Checkpoint, DType};
use std::collections::BTreeMap;

/// What is known of the sizes before the file is read.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub hidden: Option<usize>,
    pub feedforward: Option<usize>,
    pub emb: Option<usize>,
    pub positions: Option<usize>,
    /// Entries of the vocabulary that will be written beside the weights.
    pub vocab: Option<usize>,
}

fn source(sym: char) -> &'static str {
    match sym {
        'H' => "hidden_size",
        'F' => "feedforward_size",
        'E' => "emb_size",
        'P' => "max_seq_length",
        'V' => "the vocabulary",
        _ => "the format",
    }
}

/// Checks `ckpt` (UER naming v1 or v2); `file` names it in errors.
pub fn check(ckpt: &Checkpoint, known: &Known, file: &str) -> Result<(), ConvertError> {
    let mut bound: BTreeMap<char, (usize, String)> = BTreeMap::new();
    let pre = [
        ('H', known.hidden),
        ('F', known.feedforward),
        ('E', known.emb),
        ('P', known.positions),
        ('V', known.vocab),
    ];
    for (sym, v) in pre {
        if let Some(v) = v {
            bound.insert(sym, (v, source(sym).to_string()));
        }
    }
    for name in ckpt.names() {
        let Some(t) = ckpt.get(name) else { continue };
        let dims = &t.shape;
        if dims.contains(&0) {
            return Err(shape_err(file, name, dims, "no dimension of 0".into()));
        }
        let Some((_, syms)) = SHAPES.iter().find(|(suffix, _)| name.ends_with(suffix)) else {
            continue;
        };
        if !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
            return Err(ConvertError::Shape {
                file: file.into(),
                key: name.to_string(),
                shape: dims.clone(),
                expected: format!("a float tensor, not {:?}", t.dtype),
            });
        }
        let want = |bound: &BTreeMap<char, (usize, String)>| -> String {
            let parts: Vec<String> = syms
                .iter()
                .map(|s| match bound.get(s) {
                    Some((v, _)) => v.to_string(),
                    None => s.to_string(),
                })
                .collect();
            format!("[{}]", parts.join(", "))
        };
        if dims.len() != syms.len() {
            let expected = want(&bound);
            return Err(shape_err(file, name, dims, expected));
        }
        for (&d, &sym) in dims.iter().zip(syms.iter()) {
            if let Some(fixed) = sym.to_digit(10) {
                if d != fixed as usize {
                    let expected = want(&bound);
                    return Err(shape_err(file, name, dims, expected));
                }
                continue;
            }
            match bound.get(&sym) {
                Some((v, from)) if *v != d => {
                    let expected = format!("{} ({sym} = {v} from {from})", want(&bound));
                    return Err(shape_err(file, name, dims, expected));
                }
                Some(_) => {}
                None => {
                    bound.insert(sym, (d, format!("`{name}`")));
                }
            }
        }
    }
    Ok(())
}

fn shape_err(file: &str, key: &str, shape: &[usize], expected: String) -> ConvertError {
    ConvertError::Shape {
        file: file.into(),
        key: key.into(),
        shape: shape.to_vec(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Tensor;

    fn ckpt(entries: &[(&str, Vec<usize>)]) -> Checkpoint {
        let mut c = Checkpoint::default();
        for (k, s) in entries {
            let n = s.iter().product();
            c.insert(*k, Tensor::from_f32(s.clone(), &vec![0.0; n]));
        }
        c
    }

    #[test]
    fn consistent_file_passes_and_a_wrong_query_fails() {
        let good = ckpt(&[
            ("embedding.word.embedding.weight", vec![10, 4]),
            (
                "encoder.transformer.0.self_attn.linear_layers.0.weight",
                vec![4, 4],
            ),
            (
                "encoder.transformer.0.feed_forward.linear_1.weight",
                vec![8, 4],
            ),
            (
                "encoder.transformer.1.feed_forward.linear_1.weight",
                vec![8, 4],
            ),
        ]);
        check(&good, &Known::default(), "f").unwrap();
        let known = Known {
            vocab: Some(11),
            ..Default::default()
        };
        let e = check(&good, &known, "f").unwrap_err().to_string();
        assert!(
            e.contains("embedding.word.embedding.weight") && e.contains("V = 11"),
            "{e}"
        );
        let bad = ckpt(&[
            ("encoder.transformer.0.layer_norm_1.gamma", vec![4]),
            (
                "encoder.transformer.0.self_attn.linear_layers.0.weight",
                vec![4, 5],
            ),
        ]);
        let e = check(&bad, &Known::default(), "f").unwrap_err().to_string();
        assert!(e.contains("[4, 5]") && e.contains("[4, 4]"), "{e}");
        let empty = ckpt(&[("encoder.transformer.0.layer_norm_1.gamma", vec![0])]);
        assert!(check(&empty, &Known::default(), "f").is_err());
    }
}
