//! Building a [`Model`] from a [`Checkpoint`] in **UER naming v2** (the canonical names;
//! [`crate::convert::to_uer`] produces them from v1, the `sp_linear` spelling and HF) and a
//! [`ModelConfig`]. Heads are detected from the keys; a missing decoder weight means it is
//! tied to the word embedding. Also makes random checkpoints (benchmarks, tests).

use super::ModelError;
use super::config::{Dtype, EncoderKind, LnPosition, MaskKind, ModelConfig};
use super::encoder::{Encoder, FeedForward, SelfAttention, TransformerLayer, expected_layers};
use super::heads::{ClassifierHead, LmHead, MlmHead, Pooling, SpHead};
use super::layer_norm::LayerNorm;
use super::lstm::{Lstm, LstmLayer};
use super::transformer::{Embeddings, Model};
use crate::checkpoint::{Checkpoint, Tensor as CkptTensor};
use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{AllocationProperty, Bytes, Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::BTreeSet;

/// UER naming v2 keys the model reads (`{i}` = layer index; ALBERT's shared layer has no
/// index): the parts the naming table ([`crate::convert::names`]) composes its v2 column of,
/// spelled there once.
pub use crate::convert::names::v2 as keys;

/// What loading found: heads built, tied decoders, and keys the model did not use.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Heads built, e.g. `["mlm", "sp"]`.
    pub heads: Vec<&'static str>,
    /// Heads whose decoder took the word embedding (tied).
    pub tied: Vec<&'static str>,
    /// Keys in the checkpoint the model did not read.
    pub unused: Vec<String>,
    /// With [`Dtype::Int8`]: the int8 kernel path that runs the encoder's linear layers
    /// (`avx512-vnni`, `avx-vnni`, `avx2` or `scalar`, [`crate::kernels::int8::Path`]).
    pub int8_path: Option<&'static str>,
    /// With [`Dtype::Bf16`]: the bf16 kernel path that runs the encoder's linear layers
    /// (`avx512-bf16`, `avx2-fma` or `scalar`, [`crate::kernels::bf16::Bf16Path`]).
    pub bf16_path: Option<&'static str>,
}

/// Reads tensors by name, remembering which were used.
struct Reader<'a, B: Backend> {
    ckpt: &'a Checkpoint,
    device: &'a B::Device,
    used: RefCell<BTreeSet<String>>,
}

impl<'a, B: Backend> Reader<'a, B> {
    fn source(&self) -> String {
        match &self.ckpt.source {
            Some(p) => p.display().to_string(),
            None => "checkpoint".into(),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.ckpt.get(key).is_some()
    }

    fn raw(&self, key: &str, shape: &[usize]) -> Result<&'a CkptTensor, ModelError> {
        let t = self
            .ckpt
            .get(key)
            .ok_or_else(|| ModelError::MissingTensor {
                source_name: self.source(),
                key: key.to_string(),
                hint: hint(self.ckpt),
            })?;
        let ok = t.shape.len() == shape.len()
            && t.shape.iter().zip(shape).all(|(a, b)| *b == 0 || a == b);
        if !ok {
            return Err(ModelError::Shape {
                source_name: self.source(),
                key: key.into(),
                expected: shape.to_vec(),
                got: t.shape.clone(),
            });
        }
        self.used.borrow_mut().insert(key.to_string());
        Ok(t)
    }

    /// A 2-D tensor as stored; 0 in `shape` means any size.
    fn matrix(&self, key: &str, shape: [usize; 2]) -> Result<Tensor<B, 2>, ModelError> {
        let t = self.raw(key, &shape)?;
        Ok(Tensor::from_data(data(t), self.device))
    }

    /// Hands `f` the f32 values of `key` (row-major, as stored): the checkpoint's bytes
    /// themselves when they are aligned little-endian f32 (a memory map), else a converted
    /// copy. Then the tensor's file pages are dropped from memory
    /// ([`crate::checkpoint::release_pages`]): for weights read once to make their int8 or
    /// bf16 twins. Only for keys already read (checked) by the loader.
    fn with_values<R>(&self, key: &str, f: impl FnOnce(&[f32]) -> R) -> R {
        let t = self
            .ckpt
            .get(key)
            .expect("the loader read this key before lowering its precision");
        let bytes = t.bytes();
        let out = match bytemuck::try_cast_slice::<u8, f32>(bytes) {
            Ok(values)
                if t.dtype == crate::checkpoint::DType::F32 && cfg!(target_endian = "little") =>
            {
                f(values)
            }
            _ => f(&t.to_f32_vec()),
        };
        crate::checkpoint::release_pages(t);
        out
    }

    fn vector(&self, key: &str, n: usize) -> Result<Tensor<B, 1>, ModelError> {
        let t = self.raw(key, &[n])?;
        Ok(Tensor::from_data(data(t), self.device))
    }

    /// A torch-style linear `prefix.weight` `[out, in]` (+ `prefix.bias`). On Flex the
    /// weight keeps that layout and Burn's `[in, out]` is its transposed view (nothing is
    /// copied; the fused linear reads it as Bᵀ). Other backends get it transposed once on
    /// the host into a contiguous `[in, out]` buffer, uploaded once: on wgpu (lavapipe,
    /// Burn 0.21) the transposed view gave wrong logits in greedy decoding (one new position
    /// a step) while the full forward was right; the contiguous weight matches UER-py.
    fn linear(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear<B>, ModelError> {
        let bias = bias.then(|| format!("{prefix}.bias"));
        self.linear_keys(&format!("{prefix}.weight"), bias.as_deref(), d_in, d_out)
    }

    /// [`Self::linear`] with the weight and bias keys spelled out (torch's `nn.LSTM` names
    /// them `weight_ih_l0`, `bias_ih_l0`).
    fn linear_keys(
        &self,
        weight_key: &str,
        bias_key: Option<&str>,
        d_in: usize,
        d_out: usize,
    ) -> Result<Linear<B>, ModelError> {
        let t = self.raw(weight_key, &[d_out, d_in])?;
        let contiguous = CONTIGUOUS_WEIGHTS.load(std::sync::atomic::Ordering::Relaxed)
            || !crate::kernels::reads_transposed_weights::<B>();
        let weight = if contiguous {
            Tensor::from_data(data(&crate::convert::ops::transpose(t)), self.device)
        } else {
            Tensor::<B, 2>::from_data(data(t), self.device).transpose()
        };
        let bias = match bias_key {
            Some(key) => Some(Param::from_tensor(self.vector(key, d_out)?)),
            None => None,
        };
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias,
        })
    }

    fn layer_norm(
        &self,
        prefix: &str,
        n: usize,
        config: &ModelConfig,
    ) -> Result<LayerNorm<B>, ModelError> {
        let gamma = self.vector(&format!("{prefix}.gamma"), n)?;
        let beta = self.vector(&format!("{prefix}.beta"), n)?;
        Ok(LayerNorm::new(gamma, beta, config.ln_kind, config.ln_eps))
    }
}

static CONTIGUOUS_WEIGHTS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Loads linear weights as contiguous `[in, out]` copies — the layout uerzoo used before
/// loading became copy-free — instead of transposed views of the file's `[out, in]` bytes.
/// Off by default; process-wide. For tests and benchmarks that show both layouts compute
/// the same bytes (`tests/copy_free.rs`).
pub fn set_contiguous_weights(on: bool) {
    CONTIGUOUS_WEIGHTS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// A checkpoint tensor as Burn data. Little-endian f32 at an aligned address (what torch
/// zip and safetensors files hold) is shared with the checkpoint's storage — the memory
/// map — without a copy: the backend reads the file's pages (Flex) or uploads them once
/// (GPU backends). Other dtypes and unaligned legacy storages are converted: one copy.
fn data(t: &CkptTensor) -> TensorData {
    let aligned = t.bytes().as_ptr().align_offset(std::mem::align_of::<f32>()) == 0;
    if t.dtype == crate::checkpoint::DType::F32 && aligned && cfg!(target_endian = "little") {
        let bytes = Bytes::from_shared(t.shared_bytes(), AllocationProperty::File);
        TensorData::from_bytes(bytes, t.shape.clone(), burn::tensor::DType::F32)
    } else {
        TensorData::new(t.to_f32_vec(), t.shape.clone())
    }
}

/// A hint for a missing key: which naming the keys look like.
fn hint(ckpt: &Checkpoint) -> String {
    let names: Vec<&str> = ckpt.names().collect();
    if names.contains(&crate::convert::names::v1::WORD) {
        "the keys look like UER naming v1; convert them with `convert::to_uer` (naming v2) first"
            .into()
    } else if names.iter().any(|n| {
        crate::convert::names::HF_ROOTS
            .iter()
            .any(|root| n.starts_with(root))
    }) {
        "the keys look like a Huggingface model; convert them with `convert::to_uer` (naming v2) first".into()
    } else {
        "check that the config matches the checkpoint".into()
    }
}

/// Builds the model from `ckpt` (UER naming v2) and `config` on `device`.
///
/// `vocab_size` and `max_seq_length` are taken from the embeddings. Heads: MLM when
/// `target.mlm.linear_1.weight` exists (decoder tied when `target.mlm.linear_2.weight` is
/// absent), SP when `target.sp.linear_1.weight` exists, LM when
/// `target.lm.output_layer.weight` exists or the model is causal without an MLM head (tied),
/// and a classifier (first-token pooling; set `pooling` after loading) when
/// `output_layer_1.weight` exists (UER-py run_classifier checkpoints) or
/// `target.cls.linear_1.weight` (UER-py 2019's classification target; labels from its shape).
pub fn load_model<B: Backend>(
    ckpt: &Checkpoint,
    config: &ModelConfig,
    device: &B::Device,
) -> Result<(Model<B>, LoadReport), ModelError> {
    config.validate()?;
    if config.dtype == Dtype::Int8 && !crate::kernels::runs_int8::<B>() {
        return Err(ModelError::Unsupported {
            field: "dtype",
            value: "int8 on this backend".into(),
            supported: "int8 for inference on the CPU (the Flex backend, `--device cpu`); f32 on every backend and for training",
        });
    }
    if config.dtype == Dtype::Int8 && config.encoder == EncoderKind::Lstm {
        // The int8 kernels quantize the transformer's GEMMs; the LSTM's per-step gates
        // would run in f32 while the output claimed int8.
        return Err(ModelError::Unsupported {
            field: "dtype",
            value: "int8 with the LSTM encoder".into(),
            supported: "f32 for UER-py 2019's LSTM (drop --dtype int8); int8 for transformer encoders on the CPU",
        });
    }
    if config.dtype == Dtype::Bf16 && !crate::kernels::runs_bf16::<B>() {
        return Err(ModelError::Unsupported {
            field: "dtype",
            value: "bf16 on this backend".into(),
            supported: "bf16 for inference on the CPU (the Flex backend, `--device cpu`); f32 on every backend and for training",
        });
    }
    if config.dtype == Dtype::Bf16 && config.encoder == EncoderKind::Lstm {
        // The bf16 kernel runs the transformer's GEMMs; the LSTM's per-step gates would
        // run in f32 while the output claimed bf16.
        return Err(ModelError::Unsupported {
            field: "dtype",
            value: "bf16 with the LSTM encoder".into(),
            supported: "f32 for UER-py 2019's LSTM (drop --dtype bf16); bf16 for transformer encoders on the CPU",
        });
    }
    let r = Reader::<B> {
        ckpt,
        device,
        used: RefCell::new(BTreeSet::new()),
    };
    let mut report = LoadReport::default();
    let (e, h, f) = (config.emb_size, config.hidden_size, config.feedforward_size);

    let word = r.matrix(keys::WORD, [0, e])?;
    let position = r.matrix(keys::POS, [0, e])?;
    let mut config = config.clone();
    config.vocab_size = word.dims()[0];
    config.max_seq_length = position.dims()[0];
    let segment = if config.segment_embedding {
        Some(Param::from_tensor(r.matrix(keys::SEG, [3, e])?))
    } else {
        None
    };
    let emb_ln = if config.embedding_layernorm {
        Some(r.layer_norm(keys::EMB_LN, e, &config)?)
    } else {
        None
    };
    let word_t = word.clone().transpose();
    let embedding = Embeddings {
        word: Param::from_tensor(word),
        position: Param::from_tensor(position),
        segment,
        layer_norm: emb_ln,
    };

    let bias = config.transformer_bias;
    let linear = if config.factorized_embedding {
        Some(r.linear(keys::ENC_LINEAR, e, h, true)?)
    } else {
        None
    };
    let mut layers = Vec::new();
    let rnn = match config.encoder {
        EncoderKind::Lstm => Some(load_lstm(&r, &config)?),
        EncoderKind::Transformer => None,
    };
    let transformer_layers = match config.encoder {
        EncoderKind::Lstm => 0,
        EncoderKind::Transformer => expected_layers(&config),
    };
    for i in 0..transformer_layers {
        let p = if config.parameter_sharing {
            keys::SHARED_LAYER.to_string()
        } else {
            crate::convert::names::instantiate(keys::LAYER, i)
        };
        layers.push(TransformerLayer {
            self_attn: SelfAttention {
                query: r.linear(&format!("{p}.{}", keys::QUERY), h, h, bias)?,
                key: r.linear(&format!("{p}.{}", keys::KEY), h, h, bias)?,
                value: r.linear(&format!("{p}.{}", keys::VALUE), h, h, bias)?,
                output: r.linear(&format!("{p}.{}", keys::ATTN_OUT), h, h, bias)?,
                heads: config.heads_num,
                int8: None,
                bf16: None,
            },
            feed_forward: FeedForward {
                linear_1: r.linear(&format!("{p}.{}", keys::FF_1), h, f, bias)?,
                linear_2: r.linear(&format!("{p}.{}", keys::FF_2), f, h, bias)?,
                act: config.activation,
                int8: None,
                bf16: None,
            },
            layer_norm_1: r.layer_norm(&format!("{p}.{}", keys::LN_1), h, &config)?,
            layer_norm_2: r.layer_norm(&format!("{p}.{}", keys::LN_2), h, &config)?,
            ln_position: config.ln_position,
        });
    }
    let final_ln = if config.ln_position == LnPosition::Pre && rnn.is_none() {
        Some(r.layer_norm(keys::FINAL_LN, h, &config)?)
    } else {
        None
    };
    let mut encoder = Encoder {
        linear,
        layers,
        layer_norm: final_ln,
        rnn,
        layers_num: config.layers_num,
    };

    let v = config.vocab_size;
    let tied = |bias: Option<Tensor<B, 1>>| Linear {
        weight: Param::from_tensor(word_t.clone()),
        bias: bias.map(Param::from_tensor),
    };
    let mlm = if r.has(&format!("{}.weight", keys::MLM_1)) {
        report.heads.push("mlm");
        // ALBERT's MLM head works in emb_size; the others in hidden_size.
        let m = if config.factorized_embedding { e } else { h };
        let linear_2 = if r.has(&format!("{}.weight", keys::MLM_2)) {
            r.linear(keys::MLM_2, m, v, true)?
        } else {
            report.tied.push("mlm");
            tied(Some(r.vector(&format!("{}.bias", keys::MLM_2), v)?))
        };
        Some(MlmHead {
            linear_1: r.linear(keys::MLM_1, h, m, true)?,
            layer_norm: r.layer_norm(keys::MLM_LN, m, &config)?,
            linear_2,
            act: config.activation,
        })
    } else {
        None
    };
    let sp = if r.has(&format!("{}.weight", keys::SP_1)) {
        report.heads.push("sp");
        Some(SpHead {
            linear_1: r.linear(keys::SP_1, h, h, true)?,
            linear_2: r.linear(keys::SP_2, h, 2, true)?,
        })
    } else {
        None
    };
    let lm_key = format!("{}.weight", keys::LM_OUT);
    let lm = if r.has(&lm_key) {
        report.heads.push("lm");
        let lm_bias = r.has(&format!("{}.bias", keys::LM_OUT));
        Some(LmHead::new(r.linear(keys::LM_OUT, h, v, lm_bias)?))
    } else if config.mask == MaskKind::Causal && mlm.is_none() && e == h {
        // A tied decoder reads the hidden state with the `[vocab, emb]` word embedding; an
        // LSTM classifier (emb ≠ hidden, no LM output layer) has no LM to tie.
        report.heads.push("lm");
        report.tied.push("lm");
        Some(LmHead::new(tied(None)))
    } else {
        None
    };
    let mut lm = lm;
    if config.dtype != Dtype::F32 {
        lower_precision(&r, &config, &mut encoder.layers, lm.as_mut(), &mut report);
    }
    let classifier = match keys::CLASSIFIERS
        .iter()
        .find(|(one, _)| r.has(&format!("{one}.weight")))
    {
        Some(&(one, two)) => {
            report.heads.push("classifier");
            let labels = r
                .ckpt
                .get(&format!("{two}.weight"))
                .map_or(0, |t| t.shape[0]);
            Some(ClassifierHead {
                output_layer_1: r.linear(one, h, h, true)?,
                output_layer_2: r.linear(two, h, labels, true)?,
                pooling: Pooling::First,
            })
        }
        None => None,
    };
    let used = r.used.into_inner();
    report.unused = ckpt
        .names()
        .filter(|n| !used.contains(*n))
        .map(String::from)
        .collect();
    Ok((
        Model {
            embedding,
            encoder,
            mlm,
            sp,
            lm,
            classifier,
            config,
        },
        report,
    ))
}

/// The weight keys of layer application `i`'s linear layers, in [`TransformerLayer`] order:
/// query, key, value, attention output, feed-forward 1 and 2.
fn layer_weight_keys(config: &ModelConfig, i: usize) -> [String; 6] {
    let p = if config.parameter_sharing {
        keys::SHARED_LAYER.to_string()
    } else {
        crate::convert::names::instantiate(keys::LAYER, i)
    };
    [
        keys::QUERY,
        keys::KEY,
        keys::VALUE,
        keys::ATTN_OUT,
        keys::FF_1,
        keys::FF_2,
    ]
    .map(|k| format!("{p}.{k}.weight"))
}

/// Gives the transformer layers' linear layers (attention q/k/v/o, feed-forward) and the LM
/// head int8 or bf16 twins for `config.dtype`, made from the checkpoint's `[out, in]` f32
/// values. The LM head comes first: it is the largest matrix (the vocabulary), and each
/// matrix's file pages are dropped from memory once its twin is made
/// ([`Reader::with_values`]), so the f32 weights never stay resident beside the low-precision
/// ones (the f32 tensors remain valid: a page touched again is read from the file again).
fn lower_precision<B: Backend>(
    r: &Reader<'_, B>,
    config: &ModelConfig,
    layers: &mut [TransformerLayer<B>],
    lm: Option<&mut LmHead<B>>,
    report: &mut LoadReport,
) {
    use crate::kernels::{Bf16Linear, bf16, int8};
    use std::sync::Arc;
    let bias = |l: &Linear<B>| {
        l.bias.as_ref().map(|b| {
            b.val()
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("an f32 bias converts to f32")
        })
    };
    let q = |key: &str, l: &Linear<B>| {
        let [d_in, d_out] = l.weight.dims();
        let w = r.with_values(key, |w| int8::PackedWeight::quantize(w, d_out, d_in));
        int8::QLinear {
            weight: w,
            bias: bias(l),
        }
    };
    let h = |key: &str, l: &Linear<B>| {
        let [d_in, d_out] = l.weight.dims();
        let w = r.with_values(key, |w| {
            bf16::Bf16Weight::pack(w, d_out, d_in)
                .expect("a checkpoint weight has the shape its layer was loaded with")
        });
        Bf16Linear {
            weight: w,
            bias: bias(l),
        }
    };
    if let Some(lm) = lm {
        let key = if r.has(&format!("{}.weight", keys::LM_OUT)) {
            format!("{}.weight", keys::LM_OUT)
        } else {
            keys::WORD.to_string()
        };
        match config.dtype {
            Dtype::Int8 => lm.int8 = Some(Arc::new(q(&key, &lm.output_layer))),
            Dtype::Bf16 => lm.bf16 = Some(Arc::new(h(&key, &lm.output_layer))),
            Dtype::F32 => {}
        }
    }
    for (i, layer) in layers.iter_mut().enumerate() {
        let k = layer_weight_keys(config, i);
        let a = &mut layer.self_attn;
        let f = &mut layer.feed_forward;
        match config.dtype {
            Dtype::Int8 => {
                a.int8 = Some(Arc::new([
                    q(&k[0], &a.query),
                    q(&k[1], &a.key),
                    q(&k[2], &a.value),
                    q(&k[3], &a.output),
                ]));
                f.int8 = Some(Arc::new([q(&k[4], &f.linear_1), q(&k[5], &f.linear_2)]));
            }
            Dtype::Bf16 => {
                a.bf16 = Some(Arc::new([
                    h(&k[0], &a.query),
                    h(&k[1], &a.key),
                    h(&k[2], &a.value),
                    h(&k[3], &a.output),
                ]));
                f.bf16 = Some(Arc::new([h(&k[4], &f.linear_1), h(&k[5], &f.linear_2)]));
            }
            Dtype::F32 => {}
        }
    }
    match config.dtype {
        Dtype::Int8 => report.int8_path = Some(int8::Path::best().name()),
        Dtype::Bf16 => report.bf16_path = Some(bf16::Bf16Path::best().name()),
        Dtype::F32 => {}
    }
}

/// UER-py 2019's LSTM (`encoder.rnn.{weight,bias}_{ih,hh}_l{k}`, torch's `[4H, in]`
/// layout, gates i, f, g, o): layer 0 reads `emb_size`, the others `hidden_size`.
fn load_lstm<B: Backend>(r: &Reader<'_, B>, config: &ModelConfig) -> Result<Lstm<B>, ModelError> {
    let h = config.hidden_size;
    let layers = (0..config.layers_num)
        .map(|k| {
            let d_in = if k == 0 { config.emb_size } else { h };
            let key = |what: &str| format!("{}{what}_l{k}", keys::LSTM);
            Ok(LstmLayer {
                input: r.linear_keys(&key("weight_ih"), Some(&key("bias_ih")), d_in, 4 * h)?,
                hidden: r.linear_keys(&key("weight_hh"), Some(&key("bias_hh")), h, 4 * h)?,
            })
        })
        .collect::<Result<_, ModelError>>()?;
    Ok(Lstm {
        layers,
        hidden_size: h,
    })
}

/// A checkpoint in UER naming v2 with random weights for `config` (`vocab_size` and
/// `max_seq_length` must be set): weights uniform in ±0.05, LN gamma 1 and beta 0, an MLM
/// head for fully-visible models and an LM head for causal ones, both untied.
pub fn random_checkpoint(config: &ModelConfig, seed: u64) -> Checkpoint {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut ckpt = Checkpoint::default();
    let mut put = |name: String, shape: Vec<usize>, fill: Option<f32>| {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = match fill {
            Some(x) => vec![x; n],
            None => (0..n).map(|_| rng.random_range(-0.05f32..0.05)).collect(),
        };
        ckpt.insert(name, CkptTensor::from_f32(shape, &values));
    };
    let (v, e, h, f) = (
        config.vocab_size,
        config.emb_size,
        config.hidden_size,
        config.feedforward_size,
    );
    let lin =
        |put: &mut dyn FnMut(String, Vec<usize>, Option<f32>), p: &str, i: usize, o: usize| {
            put(format!("{p}.weight"), vec![o, i], None);
            put(format!("{p}.bias"), vec![o], None);
        };
    let ln = |put: &mut dyn FnMut(String, Vec<usize>, Option<f32>), p: &str, n: usize| {
        put(format!("{p}.gamma"), vec![n], Some(1.0));
        put(format!("{p}.beta"), vec![n], Some(0.0));
    };
    put(keys::WORD.into(), vec![v, e], None);
    put(keys::POS.into(), vec![config.max_seq_length, e], None);
    if config.segment_embedding {
        put(keys::SEG.into(), vec![3, e], None);
    }
    if config.embedding_layernorm {
        ln(&mut put, keys::EMB_LN, e);
    }
    if config.factorized_embedding {
        lin(&mut put, keys::ENC_LINEAR, e, h);
    }
    for i in 0..expected_layers(config) {
        let p = if config.parameter_sharing {
            keys::SHARED_LAYER.to_string()
        } else {
            crate::convert::names::instantiate(keys::LAYER, i)
        };
        for k in [keys::QUERY, keys::KEY, keys::VALUE, keys::ATTN_OUT] {
            lin(&mut put, &format!("{p}.{k}"), h, h);
        }
        lin(&mut put, &format!("{p}.{}", keys::FF_1), h, f);
        lin(&mut put, &format!("{p}.{}", keys::FF_2), f, h);
        ln(&mut put, &format!("{p}.{}", keys::LN_1), h);
        ln(&mut put, &format!("{p}.{}", keys::LN_2), h);
    }
    if config.ln_position == LnPosition::Pre {
        ln(&mut put, keys::FINAL_LN, h);
    }
    if config.mask == MaskKind::Causal {
        put(format!("{}.weight", keys::LM_OUT), vec![v, h], None);
    } else {
        let m = if config.factorized_embedding { e } else { h };
        lin(&mut put, keys::MLM_1, h, m);
        ln(&mut put, keys::MLM_LN, m);
        lin(&mut put, keys::MLM_2, m, v);
    }
    ckpt
}
