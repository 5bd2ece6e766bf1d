//! Batching: the seeded instance order of each epoch and one batch on the host (masks,
//! targets, sentence-prediction labels), split by rows for data-parallel replicas.

use super::PretrainOptions;
use crate::train::TrainError;
use crate::train::dataset::{DatasetFile, PretrainTarget, Record, mask_seq};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// One batch on the host.
pub(super) struct HostBatch {
    pub(super) b: usize,
    pub(super) l: usize,
    pub(super) ids: Vec<i64>,
    pub(super) seg: Vec<i64>,
    /// Flat positions (`row · l + col`) whose token is predicted, and the targets.
    pub(super) pos: Vec<i64>,
    pub(super) tgt: Vec<i64>,
    pub(super) nsp: Vec<i64>,
}

impl HostBatch {
    /// Rows `rank·b/world .. (rank+1)·b/world` of the batch (positions re-based).
    pub(super) fn shard(self, rank: usize, world: usize) -> HostBatch {
        let (b, l) = (self.b, self.l);
        let (r0, r1) = (rank * b / world, (rank + 1) * b / world);
        let (lo, hi) = ((r0 * l) as i64, (r1 * l) as i64);
        let (mut pos, mut tgt) = (Vec::new(), Vec::new());
        for (&p, &t) in self.pos.iter().zip(&self.tgt) {
            if p >= lo && p < hi {
                pos.push(p - lo);
                tgt.push(t);
            }
        }
        HostBatch {
            b: r1 - r0,
            l,
            ids: self.ids[r0 * l..r1 * l].to_vec(),
            seg: self.seg[r0 * l..r1 * l].to_vec(),
            pos,
            tgt,
            nsp: if self.nsp.is_empty() {
                Vec::new()
            } else {
                self.nsp[r0..r1].to_vec()
            },
        }
    }
}

/// Instance order: a permutation per epoch.
pub(super) struct Order {
    n: usize,
    seed: u64,
    epoch: usize,
    perm: Vec<usize>,
}

impl Order {
    pub(super) fn new(n: usize, seed: u64) -> Self {
        Order {
            n,
            seed,
            epoch: usize::MAX,
            perm: Vec::new(),
        }
    }
    fn get(&mut self, global: usize) -> usize {
        let epoch = global / self.n;
        if epoch != self.epoch {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            rng.set_stream(epoch as u64 + 1);
            self.perm = (0..self.n).collect();
            self.perm.shuffle(&mut rng);
            self.epoch = epoch;
        }
        self.perm[global % self.n]
    }
}

pub(super) fn host_batch(
    ds: &DatasetFile,
    order: &mut Order,
    step: usize,
    opts: &PretrainOptions,
) -> Result<HostBatch, TrainError> {
    let h = &ds.header;
    let (b, l) = (opts.batch_size, h.seq_length);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(1 << 40 | step as u64);
    let mut out = HostBatch {
        b,
        l,
        ids: Vec::with_capacity(b * l),
        seg: Vec::with_capacity(b * l),
        pos: Vec::new(),
        tgt: Vec::new(),
        nsp: Vec::with_capacity(b),
    };
    for j in 0..b {
        let Record {
            mut ids,
            targets,
            seg_a,
            seg_b,
            is_random_next,
        } = ds.get(order.get(step * b + j))?;
        let seg_of = |i: usize| -> i64 {
            if (i as u32) < seg_a {
                1
            } else if (i as u32) < seg_b {
                2
            } else {
                0
            }
        };
        match h.target {
            PretrainTarget::Lm => {
                for i in 0..l {
                    out.ids.push(ids[i] as i64);
                    let s = seg_of(i);
                    out.seg.push(s);
                    if s > 0 {
                        out.pos.push((j * l + i) as i64);
                        out.tgt.push(ids[i + 1] as i64);
                    }
                }
            }
            PretrainTarget::Mlm | PretrainTarget::Bert | PretrainTarget::Albert => {
                let targets = match targets {
                    Some(t) => t,
                    None => {
                        let len = seg_a.max(seg_b) as usize;
                        let mut t = vec![0u32; l];
                        for (p, id) in
                            mask_seq(&mut ids, len, &h.specials, h.vocab_size as u32, &mut rng)
                        {
                            t[p] = id;
                        }
                        t
                    }
                };
                for i in 0..l {
                    out.ids.push(ids[i] as i64);
                    out.seg.push(seg_of(i));
                    if targets[i] > 0 {
                        out.pos.push((j * l + i) as i64);
                        out.tgt.push(targets[i] as i64);
                    }
                }
                out.nsp.push(is_random_next as i64);
            }
        }
    }
    Ok(out)
}
