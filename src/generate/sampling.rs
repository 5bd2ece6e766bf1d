//! Choosing the next token from one row of logits, as UER-py's `generate_lm.py` does:
//! logits / temperature → top-k (drop everything below the k-th largest value, ties kept)
//! → top-p (drop the tail whose cumulative probability passes p, always keeping the first
//! token above it) → draw from the softmax with a seeded ChaCha RNG. A repetition penalty
//! (CTRL/transformers style) may run first; UER-py has none, so it defaults to off.

use super::GenerateError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How the next token is chosen. [`Sampling::greedy`] is top-k 1, exactly as UER-py spells it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Keep the `top_k` largest logits (ties with the k-th kept); 0 turns it off [UER-py: 70].
    pub top_k: usize,
    /// Nucleus threshold in (0, 1]; 0 turns it off [UER-py: 0].
    pub top_p: f64,
    /// Logits are divided by this before filtering; > 0 [UER-py: 1.0].
    pub temperature: f64,
    /// Logits of tokens already in the sequence: positive ones divided by it, negative ones
    /// multiplied; 1.0 is off (UER-py has no penalty).
    pub repetition_penalty: f64,
}

impl Default for Sampling {
    /// UER-py's defaults: top-k 70, no top-p, temperature 1.
    fn default() -> Self {
        Sampling {
            top_k: 70,
            top_p: 0.0,
            temperature: 1.0,
            repetition_penalty: 1.0,
        }
    }
}

impl Sampling {
    /// Greedy decoding: top-k 1 (UER-py's way of asking for it).
    pub fn greedy() -> Self {
        Sampling {
            top_k: 1,
            ..Sampling::default()
        }
    }

    /// Checks the ranges: top-p in (0, 1] (or 0 = off), temperature > 0, penalty > 0.
    pub fn validate(&self) -> Result<(), GenerateError> {
        let bad =
            |option: &'static str, value: f64, expected: &'static str| GenerateError::Option {
                option,
                value: value.to_string(),
                expected,
            };
        if !(self.top_p == 0.0 || (self.top_p > 0.0 && self.top_p <= 1.0)) {
            return Err(bad(
                "top-p",
                self.top_p,
                "a probability in (0, 1], e.g. 0.9 (leave it out to turn nucleus sampling off)",
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(bad(
                "temperature",
                self.temperature,
                "a number > 0, e.g. 0.7 (use --greedy for deterministic output)",
            ));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(bad(
                "repetition-penalty",
                self.repetition_penalty,
                "a number > 0; 1.0 is off, 1.2 a typical penalty",
            ));
        }
        Ok(())
    }

    /// Applies penalty, temperature, top-k and top-p to `logits` in place (removed entries
    /// become −∞). `previous` are the ids already in the sequence.
    pub fn filter(&self, logits: &mut [f32], previous: &[u32]) {
        if self.repetition_penalty != 1.0 {
            let r = self.repetition_penalty as f32;
            let mut seen = vec![false; logits.len()];
            for &id in previous {
                if let Some(s) = seen.get_mut(id as usize)
                    && !*s
                {
                    *s = true;
                    let l = &mut logits[id as usize];
                    *l = if *l > 0.0 { *l / r } else { *l * r };
                }
            }
        }
        if self.temperature != 1.0 {
            let t = self.temperature as f32;
            logits.iter_mut().for_each(|l| *l /= t);
        }
        let k = self.top_k.min(logits.len());
        if k > 0 {
            let mut sorted = logits.to_vec();
            let (_, kth, _) = sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
            let threshold = *kth;
            logits
                .iter_mut()
                .filter(|l| **l < threshold)
                .for_each(|l| *l = f32::NEG_INFINITY);
        }
        if self.top_p > 0.0 {
            let mut order: Vec<usize> = (0..logits.len()).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
            let probs = softmax(&order.iter().map(|&i| logits[i]).collect::<Vec<_>>());
            let mut cumulative = 0.0f64;
            let mut remove_next = false;
            for (rank, &i) in order.iter().enumerate() {
                // Shifted right by one: a token goes when the mass *before and with* the
                // previous token already passed p; the first token always stays.
                if rank > 0 && remove_next {
                    logits[i] = f32::NEG_INFINITY;
                }
                cumulative += probs[rank];
                remove_next = cumulative > self.top_p;
            }
        }
    }
}

/// Softmax in f64 (−∞ entries get probability 0).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&l| ((l as f64) - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The seeded random source of one generation run: same seed, same tokens.
#[derive(Debug, Clone)]
pub struct Sampler {
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(seed: u64) -> Self {
        Sampler {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Draws an id from filtered `logits`. When only one token survives filtering it is
    /// taken without touching the RNG, so greedy runs never depend on the seed.
    pub fn draw(&mut self, logits: &[f32]) -> u32 {
        let mut alive = logits.iter().enumerate().filter(|(_, l)| l.is_finite());
        let first = alive.next().map(|(i, _)| i).unwrap_or(0);
        if alive.next().is_none() {
            return first as u32;
        }
        let probs = softmax(logits);
        let u: f64 = self.rng.random();
        let mut acc = 0.0;
        let mut last = first;
        for (i, p) in probs.iter().enumerate() {
            if *p > 0.0 {
                acc += p;
                last = i;
                if u < acc {
                    return i as u32;
                }
            }
        }
        last as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_ties_with_the_kth() {
        let mut l = vec![1.0, 3.0, 2.0, 3.0, 0.5];
        Sampling {
            top_k: 1,
            ..Sampling::default()
        }
        .filter(&mut l, &[]);
        assert_eq!(
            l.iter().map(|x| x.is_finite()).collect::<Vec<_>>(),
            [false, true, false, true, false]
        );
    }

    #[test]
    fn top_p_keeps_the_first_token_above_the_threshold() {
        // probabilities 0.5, 0.3, 0.2 (logits are their logs)
        let mut l: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
        Sampling {
            top_k: 0,
            top_p: 0.6,
            ..Sampling::default()
        }
        .filter(&mut l, &[]);
        assert_eq!(
            l.iter().map(|x| x.is_finite()).collect::<Vec<_>>(),
            [true, true, false]
        );
        let mut l: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
        Sampling {
            top_k: 0,
            top_p: 0.4,
            ..Sampling::default()
        }
        .filter(&mut l, &[]);
        assert_eq!(
            l.iter().map(|x| x.is_finite()).collect::<Vec<_>>(),
            [true, false, false]
        );
    }

    #[test]
    fn temperature_and_penalty() {
        let mut l = vec![2.0, -2.0, 1.0];
        Sampling {
            top_k: 0,
            temperature: 2.0,
            repetition_penalty: 2.0,
            ..Sampling::default()
        }
        .filter(&mut l, &[0, 1, 0]);
        assert_eq!(l, vec![0.5, -2.0, 0.5]);
    }

    #[test]
    fn draw_is_seeded_and_follows_the_distribution() {
        let logits: Vec<f32> = [0.7f32, 0.2, 0.1].iter().map(|p| p.ln()).collect();
        let run = |seed| {
            let mut s = Sampler::new(seed);
            (0..2000).map(|_| s.draw(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let draws = run(7);
        let share = draws.iter().filter(|&&i| i == 0).count() as f64 / draws.len() as f64;
        assert!((share - 0.7).abs() < 0.04, "share of token 0: {share}");
    }

    #[test]
    fn validation() {
        assert!(
            Sampling {
                top_p: 1.5,
                ..Sampling::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Sampling {
                top_p: -0.1,
                ..Sampling::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Sampling {
                top_p: 1.0,
                ..Sampling::default()
            }
            .validate()
            .is_ok()
        );
        assert!(
            Sampling {
                temperature: 0.0,
                ..Sampling::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Sampling {
                repetition_penalty: 0.0,
                ..Sampling::default()
            }
            .validate()
            .is_err()
        );
    }
}
