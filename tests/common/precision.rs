//! A low-precision forward (`--dtype int8|bf16`) against the f32 one on the UER fixtures: the
//! fixture opened with a dtype, its reference batch, and how close the two outputs are.

use uerzoo::model::{self, Dtype, open::open_model, tasks::Batch, tasks::ForwardOutput};

/// The UER fixture `name` (its `uer_model.bin` and `uer_config.json`) with `dtype`.
pub fn opened(name: &str, dtype: Dtype) -> model::OpenedModel {
    let dir = super::uer_fixture(name);
    let mut m = open_model(
        &dir.join("uer_model.bin"),
        Some(&dir.join("uer_config.json")),
    )
    .unwrap();
    m.config.dtype = dtype;
    m
}

/// The input batch of the fixture's `uer_outputs.safetensors`.
pub fn batch_of(name: &str) -> Batch {
    let reference = super::read(&super::uer_fixture(name).join("uer_outputs.safetensors"));
    let ids = reference.get("input_ids").unwrap();
    Batch {
        ids: ids.to_i64_vec().unwrap(),
        segment: reference.get("segment").unwrap().to_i64_vec().unwrap(),
        batch: ids.shape[0],
        seq: ids.shape[1],
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// How close `low` is to `full` (the f32 run) over the real positions (segment ≠ 0).
pub struct Closeness {
    /// The smallest hidden-state cosine of a position.
    pub min_cos: f64,
    /// The largest |Δlogit|, and the largest |logit| of the f32 run.
    pub worst: f32,
    pub top: f32,
    /// Positions whose argmax token agrees, of `real`.
    pub agree: usize,
    pub real: usize,
}

pub fn closeness(full: &ForwardOutput, low: &ForwardOutput, segment: &[i64]) -> Closeness {
    assert_eq!(full.hidden.shape, low.hidden.shape);
    let h = full.hidden.shape[2];
    let mut min_cos = f64::INFINITY;
    for (pos, &s) in segment.iter().enumerate() {
        if s == 0 {
            continue;
        }
        let r = pos * h..(pos + 1) * h;
        min_cos = min_cos.min(cosine(
            &full.hidden.values[r.clone()],
            &low.hidden.values[r],
        ));
    }
    let (fl, ll) = (full.logits.as_ref().unwrap(), low.logits.as_ref().unwrap());
    let v = fl.shape[2];
    let (mut worst, mut top, mut agree, mut real) = (0f32, 0f32, 0, 0);
    for (pos, &s) in segment.iter().enumerate() {
        if s == 0 {
            continue;
        }
        let (a, b) = (
            &fl.values[pos * v..(pos + 1) * v],
            &ll.values[pos * v..(pos + 1) * v],
        );
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
            top = top.max(x.abs());
        }
        let am = |r: &[f32]| (0..v).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap();
        agree += usize::from(am(a) == am(b));
        real += 1;
    }
    Closeness {
        min_cos,
        worst,
        top,
        agree,
        real,
    }
}
