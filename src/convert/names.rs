//! The naming maps, as data: one table per family, one row per tensor, with a column per
//! UER naming generation (v1 = 2019–2022, every published zoo weight; v2 = 2023+, current
//! UER-py/TencentPretrain) and one for Huggingface. `{i}` stands for the layer index.
//! Every exception to a plain copy is an [`Op`] tag on its row; the conversion in
//! [`super`] is one loop over these rows, in either direction.
//!
//! Sources: UER-py `scripts/convert_*_{from,to}_huggingface*.py` (dbiir/UER-py 5743050) and the
//! fixtures' `hf_by_uer_script/pytorch_model.bin`; `shared/FACTS.md` §1–2.

use super::{Layout, Naming};

/// UER naming v2's key parts, each spelled here once: the tables' UER columns are composed
/// from them (`concat!`) and the model's loader reads by them ([`v2`]). `{i}` is the layer
/// index; ALBERT's one shared layer has none.
#[rustfmt::skip]
macro_rules! v2 {
    (word) => { "embedding.word.embedding.weight" };
    (pos) => { "embedding.pos.embedding.weight" };
    (seg) => { "embedding.seg.embedding.weight" };
    (emb_ln) => { "embedding.layer_norm" };
    (enc_linear) => { "encoder.linear" };
    (layer) => { "encoder.transformer.{i}" };
    (shared_layer) => { "encoder.transformer" };
    (query) => { "self_attn.linear_layers.0" };
    (key) => { "self_attn.linear_layers.1" };
    (value) => { "self_attn.linear_layers.2" };
    (attn_out) => { "self_attn.final_linear" };
    (ff_1) => { "feed_forward.linear_1" };
    (ff_2) => { "feed_forward.linear_2" };
    (ln_1) => { "layer_norm_1" };
    (ln_2) => { "layer_norm_2" };
    (final_ln) => { "encoder.layer_norm" };
    (lstm) => { "encoder.rnn." };
    (mlm_1) => { "target.mlm.linear_1" };
    (mlm_ln) => { "target.mlm.layer_norm" };
    (mlm_2) => { "target.mlm.linear_2" };
    (sp_1) => { "target.sp.linear_1" };
    (sp_2) => { "target.sp.linear_2" };
    (lm_out) => { "target.lm.output_layer" };
    (cls_1) => { "output_layer_1" };
    (cls_2) => { "output_layer_2" };
    (cls_target_1) => { "target.cls.linear_1" };
    (cls_target_2) => { "target.cls.linear_2" };
}

/// UER naming v1's embedding keys, which the commands also look for to tell a UER file.
#[rustfmt::skip]
macro_rules! v1 {
    (word) => { "embedding.word_embedding.weight" };
    (pos) => { "embedding.position_embedding.weight" };
}

/// UER naming v1's embedding keys as constants (from [`v1!`]).
pub mod v1 {
    pub const WORD: &str = v1!(word);
    pub const POS: &str = v1!(pos);
}

/// UER naming v2's keys as constants (from [`v2!`]): what the model's loader reads
/// (`model::load::keys`) and what its trainers write.
pub mod v2 {
    pub const WORD: &str = v2!(word);
    pub const POS: &str = v2!(pos);
    pub const SEG: &str = v2!(seg);
    pub const EMB_LN: &str = v2!(emb_ln);
    pub const ENC_LINEAR: &str = v2!(enc_linear);
    pub const LAYER: &str = v2!(layer);
    pub const SHARED_LAYER: &str = v2!(shared_layer);
    pub const QUERY: &str = v2!(query);
    pub const KEY: &str = v2!(key);
    pub const VALUE: &str = v2!(value);
    pub const ATTN_OUT: &str = v2!(attn_out);
    pub const FF_1: &str = v2!(ff_1);
    pub const FF_2: &str = v2!(ff_2);
    pub const LN_1: &str = v2!(ln_1);
    pub const LN_2: &str = v2!(ln_2);
    pub const FINAL_LN: &str = v2!(final_ln);
    pub const LSTM: &str = v2!(lstm);
    pub const MLM_1: &str = v2!(mlm_1);
    pub const MLM_LN: &str = v2!(mlm_ln);
    pub const MLM_2: &str = v2!(mlm_2);
    pub const SP_1: &str = v2!(sp_1);
    pub const SP_2: &str = v2!(sp_2);
    pub const LM_OUT: &str = v2!(lm_out);
    pub const CLS_1: &str = v2!(cls_1);
    pub const CLS_2: &str = v2!(cls_2);
    pub const CLS_TARGET_1: &str = v2!(cls_target_1);
    pub const CLS_TARGET_2: &str = v2!(cls_target_2);
    /// The classifier heads, first match wins: run_classifier's, then UER-py 2019's
    /// classification target's (the same computation: first token → linear → tanh → linear).
    pub const CLASSIFIERS: &[(&str, &str)] = &[(CLS_1, CLS_2), (CLS_TARGET_1, CLS_TARGET_2)];
}

/// What happens to a tensor on the way between UER and Huggingface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Same bytes, new name.
    Copy,
    /// A LayerNorm weight (UER `gamma`): rescaled by sqrt((n-1)/n) under `--exact-layernorm`.
    LnWeight,
    /// The segment embedding: UER keeps 3 rows (row 0 = padding), HF 2 (drop row 0 going to
    /// HF; insert a zero row 0 going to UER).
    SegmentRows,
    /// A GPT-2 Conv1D weight: HF stores `[in, out]`, UER torch-style `[out, in]`: transpose.
    Conv1D,
    /// Part `j` of GPT-2's `c_attn` weight: UER q/k/v `[H, H]` each ⇄ HF `[H, 3H]` (the three
    /// concatenated on the out dim, then transposed).
    QkvWeight(usize),
    /// Part `j` of GPT-2's `c_attn` bias: concatenation of the q/k/v biases.
    QkvBias(usize),
    /// The MLM decoder / LM output weight, usually tied to the word embedding; HF files
    /// saved by transformers may omit it (then it is the word embedding).
    Decoder,
    /// A second HF copy of the previous row's tensor (`…decoder.bias`, which transformers 5
    /// reads when the decoder is untied). Written going to HF; going to UER it is the
    /// fallback when the main name is missing, else dropped as a duplicate.
    HfDuplicate,
}

/// One tensor: its name in UER v1, UER v2 and Huggingface, and the transform.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// UER names: `[v1, v2]`.
    pub uer: [&'static str; 2],
    /// A read-only alternative UER spelling ("" if none): the 2022 `target.sp_linear_*`.
    pub uer_alt: &'static str,
    /// The Huggingface name (canonical: `bert.` prefix, `LayerNorm.weight/bias`).
    pub hf: &'static str,
    pub op: Op,
}

const fn r(v1: &'static str, v2: &'static str, hf: &'static str, op: Op) -> Row {
    Row {
        uer: [v1, v2],
        uer_alt: "",
        hf,
        op,
    }
}

/// Same name in both UER generations.
const fn s(uer: &'static str, hf: &'static str, op: Op) -> Row {
    Row {
        uer: [uer, uer],
        uer_alt: "",
        hf,
        op,
    }
}

const fn alt(v1: &'static str, v2: &'static str, uer_alt: &'static str, hf: &'static str) -> Row {
    Row {
        uer: [v1, v2],
        uer_alt,
        hf,
        op: Op::Copy,
    }
}

use Op::*;

/// BERT-style embeddings (word, position, 3-row segment, LayerNorm), `{m}` = `bert`/`albert`.
#[rustfmt::skip]
macro_rules! bert_embeddings {
    ($m:literal) => {
        [
            r(v1!(word), v2!(word), concat!($m, ".embeddings.word_embeddings.weight"), Copy),
            r(v1!(pos), v2!(pos), concat!($m, ".embeddings.position_embeddings.weight"), Copy),
            r("embedding.segment_embedding.weight", v2!(seg), concat!($m, ".embeddings.token_type_embeddings.weight"), SegmentRows),
            s(concat!(v2!(emb_ln), ".gamma"), concat!($m, ".embeddings.LayerNorm.weight"), LnWeight),
            s(concat!(v2!(emb_ln), ".beta"), concat!($m, ".embeddings.LayerNorm.bias"), Copy),
        ]
    };
}

#[rustfmt::skip]
const BERT_EMBEDDINGS: [Row; 5] = bert_embeddings!("bert");
#[rustfmt::skip]
const ALBERT_EMBEDDINGS: [Row; 5] = bert_embeddings!("albert");

/// One post-LN BERT layer.
#[rustfmt::skip]
const BERT_LAYER: [Row; 16] = [
    s(concat!(v2!(layer), ".", v2!(query), ".weight"), "bert.encoder.layer.{i}.attention.self.query.weight", Copy),
    s(concat!(v2!(layer), ".", v2!(query), ".bias"), "bert.encoder.layer.{i}.attention.self.query.bias", Copy),
    s(concat!(v2!(layer), ".", v2!(key), ".weight"), "bert.encoder.layer.{i}.attention.self.key.weight", Copy),
    s(concat!(v2!(layer), ".", v2!(key), ".bias"), "bert.encoder.layer.{i}.attention.self.key.bias", Copy),
    s(concat!(v2!(layer), ".", v2!(value), ".weight"), "bert.encoder.layer.{i}.attention.self.value.weight", Copy),
    s(concat!(v2!(layer), ".", v2!(value), ".bias"), "bert.encoder.layer.{i}.attention.self.value.bias", Copy),
    s(concat!(v2!(layer), ".", v2!(attn_out), ".weight"), "bert.encoder.layer.{i}.attention.output.dense.weight", Copy),
    s(concat!(v2!(layer), ".", v2!(attn_out), ".bias"), "bert.encoder.layer.{i}.attention.output.dense.bias", Copy),
    s(concat!(v2!(layer), ".", v2!(ff_1), ".weight"), "bert.encoder.layer.{i}.intermediate.dense.weight", Copy),
    s(concat!(v2!(layer), ".", v2!(ff_1), ".bias"), "bert.encoder.layer.{i}.intermediate.dense.bias", Copy),
    s(concat!(v2!(layer), ".", v2!(ff_2), ".weight"), "bert.encoder.layer.{i}.output.dense.weight", Copy),
    s(concat!(v2!(layer), ".", v2!(ff_2), ".bias"), "bert.encoder.layer.{i}.output.dense.bias", Copy),
    s(concat!(v2!(layer), ".", v2!(ln_1), ".gamma"), "bert.encoder.layer.{i}.attention.output.LayerNorm.weight", LnWeight),
    s(concat!(v2!(layer), ".", v2!(ln_1), ".beta"), "bert.encoder.layer.{i}.attention.output.LayerNorm.bias", Copy),
    s(concat!(v2!(layer), ".", v2!(ln_2), ".gamma"), "bert.encoder.layer.{i}.output.LayerNorm.weight", LnWeight),
    s(concat!(v2!(layer), ".", v2!(ln_2), ".beta"), "bert.encoder.layer.{i}.output.LayerNorm.bias", Copy),
];

/// BERT's MLM head (`BertForMaskedLM` / `BertForPreTraining` `cls.predictions`).
#[rustfmt::skip]
const BERT_MLM: [Row; 7] = [
    r("target.mlm_linear_1.weight", concat!(v2!(mlm_1), ".weight"), "cls.predictions.transform.dense.weight", Copy),
    r("target.mlm_linear_1.bias", concat!(v2!(mlm_1), ".bias"), "cls.predictions.transform.dense.bias", Copy),
    r("target.layer_norm.gamma", concat!(v2!(mlm_ln), ".gamma"), "cls.predictions.transform.LayerNorm.weight", LnWeight),
    r("target.layer_norm.beta", concat!(v2!(mlm_ln), ".beta"), "cls.predictions.transform.LayerNorm.bias", Copy),
    r("target.mlm_linear_2.weight", concat!(v2!(mlm_2), ".weight"), "cls.predictions.decoder.weight", Decoder),
    r("target.mlm_linear_2.bias", concat!(v2!(mlm_2), ".bias"), "cls.predictions.bias", Copy),
    r("target.mlm_linear_2.bias", concat!(v2!(mlm_2), ".bias"), "cls.predictions.decoder.bias", HfDuplicate),
];

/// BERT's next-sentence head (pooler + `seq_relationship`).
#[rustfmt::skip]
const BERT_NSP: [Row; 4] = [
    alt("target.nsp_linear_1.weight", concat!(v2!(sp_1), ".weight"), "target.sp_linear_1.weight", "bert.pooler.dense.weight"),
    alt("target.nsp_linear_1.bias", concat!(v2!(sp_1), ".bias"), "target.sp_linear_1.bias", "bert.pooler.dense.bias"),
    alt("target.nsp_linear_2.weight", concat!(v2!(sp_2), ".weight"), "target.sp_linear_2.weight", "cls.seq_relationship.weight"),
    alt("target.nsp_linear_2.bias", concat!(v2!(sp_2), ".bias"), "target.sp_linear_2.bias", "cls.seq_relationship.bias"),
];

/// A fine-tuned classifier's head (`run_classifier` ⇄ `BertForSequenceClassification`).
#[rustfmt::skip]
const CLASSIFIER: [Row; 4] = [
    s(concat!(v2!(cls_1), ".weight"), "bert.pooler.dense.weight", Copy),
    s(concat!(v2!(cls_1), ".bias"), "bert.pooler.dense.bias", Copy),
    s(concat!(v2!(cls_2), ".weight"), "classifier.weight", Copy),
    s(concat!(v2!(cls_2), ".bias"), "classifier.bias", Copy),
];

#[rustfmt::skip]
const GPT2_EMBEDDINGS: [Row; 2] = [
    r(v1!(word), v2!(word), "transformer.wte.weight", Copy),
    r(v1!(pos), v2!(pos), "transformer.wpe.weight", Copy),
];

/// One pre-LN GPT-2 layer: q/k/v concatenated into `c_attn`, Conv1D weights transposed.
#[rustfmt::skip]
const GPT2_LAYER: [Row; 16] = [
    s(concat!(v2!(layer), ".", v2!(query), ".weight"), "transformer.h.{i}.attn.c_attn.weight", QkvWeight(0)),
    s(concat!(v2!(layer), ".", v2!(query), ".bias"), "transformer.h.{i}.attn.c_attn.bias", QkvBias(0)),
    s(concat!(v2!(layer), ".", v2!(key), ".weight"), "transformer.h.{i}.attn.c_attn.weight", QkvWeight(1)),
    s(concat!(v2!(layer), ".", v2!(key), ".bias"), "transformer.h.{i}.attn.c_attn.bias", QkvBias(1)),
    s(concat!(v2!(layer), ".", v2!(value), ".weight"), "transformer.h.{i}.attn.c_attn.weight", QkvWeight(2)),
    s(concat!(v2!(layer), ".", v2!(value), ".bias"), "transformer.h.{i}.attn.c_attn.bias", QkvBias(2)),
    s(concat!(v2!(layer), ".", v2!(attn_out), ".weight"), "transformer.h.{i}.attn.c_proj.weight", Conv1D),
    s(concat!(v2!(layer), ".", v2!(attn_out), ".bias"), "transformer.h.{i}.attn.c_proj.bias", Copy),
    s(concat!(v2!(layer), ".", v2!(ff_1), ".weight"), "transformer.h.{i}.mlp.c_fc.weight", Conv1D),
    s(concat!(v2!(layer), ".", v2!(ff_1), ".bias"), "transformer.h.{i}.mlp.c_fc.bias", Copy),
    s(concat!(v2!(layer), ".", v2!(ff_2), ".weight"), "transformer.h.{i}.mlp.c_proj.weight", Conv1D),
    s(concat!(v2!(layer), ".", v2!(ff_2), ".bias"), "transformer.h.{i}.mlp.c_proj.bias", Copy),
    s(concat!(v2!(layer), ".", v2!(ln_1), ".gamma"), "transformer.h.{i}.ln_1.weight", LnWeight),
    s(concat!(v2!(layer), ".", v2!(ln_1), ".beta"), "transformer.h.{i}.ln_1.bias", Copy),
    s(concat!(v2!(layer), ".", v2!(ln_2), ".gamma"), "transformer.h.{i}.ln_2.weight", LnWeight),
    s(concat!(v2!(layer), ".", v2!(ln_2), ".beta"), "transformer.h.{i}.ln_2.bias", Copy),
];

/// GPT-2's final LayerNorm (pre-LN: after the last layer).
#[rustfmt::skip]
const GPT2_FINAL_LN: [Row; 2] = [
    s(concat!(v2!(final_ln), ".gamma"), "transformer.ln_f.weight", LnWeight),
    s(concat!(v2!(final_ln), ".beta"), "transformer.ln_f.bias", Copy),
];

#[rustfmt::skip]
const GPT2_LM: [Row; 1] = [
    r("target.output_layer.weight", concat!(v2!(lm_out), ".weight"), "lm_head.weight", Decoder),
];

/// UER-py 2019's LM target (`--encoder gpt --target lm`): one untied output layer with a
/// bias. transformers has no exact equivalent ([`super::Layout::no_hf_form`]): the HF
/// names keep the table whole and are never written.
#[rustfmt::skip]
const LEGACY_LM: [Row; 2] = [
    r("target.output_layer.weight", concat!(v2!(lm_out), ".weight"), "uer_lm.output_layer.weight", Decoder),
    r("target.output_layer.bias", concat!(v2!(lm_out), ".bias"), "uer_lm.output_layer.bias", Copy),
];

/// One layer of UER-py 2019's LSTM encoder (torch `nn.LSTM`; same names in both UER
/// generations). transformers has no such model: the HF names only keep the table whole
/// and are never written ([`super::Layout::has_hf_form`]).
#[rustfmt::skip]
const LSTM_LAYER: [Row; 4] = [
    s(concat!(v2!(lstm), "weight_ih_l{i}"), "uer_lstm.weight_ih_l{i}", Copy),
    s(concat!(v2!(lstm), "weight_hh_l{i}"), "uer_lstm.weight_hh_l{i}", Copy),
    s(concat!(v2!(lstm), "bias_ih_l{i}"), "uer_lstm.bias_ih_l{i}", Copy),
    s(concat!(v2!(lstm), "bias_hh_l{i}"), "uer_lstm.bias_hh_l{i}", Copy),
];

/// UER-py 2019's classification target (`--target cls`): `linear_1` → tanh → `linear_2` on
/// the first token, which is `BertForSequenceClassification`'s pooler and classifier.
/// Naming v2 puts it under the target's name, as every v2 target (`target.cls.`).
#[rustfmt::skip]
const CLS_TARGET: [Row; 4] = [
    r("target.linear_1.weight", concat!(v2!(cls_target_1), ".weight"), "bert.pooler.dense.weight", Copy),
    r("target.linear_1.bias", concat!(v2!(cls_target_1), ".bias"), "bert.pooler.dense.bias", Copy),
    r("target.linear_2.weight", concat!(v2!(cls_target_2), ".weight"), "classifier.weight", Copy),
    r("target.linear_2.bias", concat!(v2!(cls_target_2), ".bias"), "classifier.bias", Copy),
];

/// run_classifier's head on GPT-2. transformers has no such class: the HF names only keep
/// the table whole and are never written ([`super::Layout::has_hf_form`]).
#[rustfmt::skip]
const GPT2_CLASSIFIER: [Row; 4] = [
    s(concat!(v2!(cls_1), ".weight"), "uer_classifier.output_layer_1.weight", Copy),
    s(concat!(v2!(cls_1), ".bias"), "uer_classifier.output_layer_1.bias", Copy),
    s(concat!(v2!(cls_2), ".weight"), "uer_classifier.output_layer_2.weight", Copy),
    s(concat!(v2!(cls_2), ".bias"), "uer_classifier.output_layer_2.bias", Copy),
];

/// ALBERT: factorized embedding projection and the one shared layer (no index).
#[rustfmt::skip]
const ALBERT_ENCODER: [Row; 18] = [
    s(concat!(v2!(enc_linear), ".weight"), "albert.encoder.embedding_hidden_mapping_in.weight", Copy),
    s(concat!(v2!(enc_linear), ".bias"), "albert.encoder.embedding_hidden_mapping_in.bias", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(query), ".weight"), "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(query), ".bias"), "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.bias", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(key), ".weight"), "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.key.weight", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(key), ".bias"), "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.key.bias", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(value), ".weight"), "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.value.weight", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(value), ".bias"), "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.value.bias", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(attn_out), ".weight"), "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.dense.weight", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(attn_out), ".bias"), "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.dense.bias", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(ff_1), ".weight"), "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(ff_1), ".bias"), "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.bias", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(ff_2), ".weight"), "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn_output.weight", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(ff_2), ".bias"), "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn_output.bias", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(ln_1), ".gamma"), "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.LayerNorm.weight", LnWeight),
    s(concat!(v2!(shared_layer), ".", v2!(ln_1), ".beta"), "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.LayerNorm.bias", Copy),
    s(concat!(v2!(shared_layer), ".", v2!(ln_2), ".gamma"), "albert.encoder.albert_layer_groups.0.albert_layers.0.full_layer_layer_norm.weight", LnWeight),
    s(concat!(v2!(shared_layer), ".", v2!(ln_2), ".beta"), "albert.encoder.albert_layer_groups.0.albert_layers.0.full_layer_layer_norm.bias", Copy),
];

/// ALBERT's MLM head (`predictions`, projecting back to the embedding size).
#[rustfmt::skip]
const ALBERT_MLM: [Row; 7] = [
    r("target.mlm_linear_1.weight", concat!(v2!(mlm_1), ".weight"), "predictions.dense.weight", Copy),
    r("target.mlm_linear_1.bias", concat!(v2!(mlm_1), ".bias"), "predictions.dense.bias", Copy),
    r("target.layer_norm.gamma", concat!(v2!(mlm_ln), ".gamma"), "predictions.LayerNorm.weight", LnWeight),
    r("target.layer_norm.beta", concat!(v2!(mlm_ln), ".beta"), "predictions.LayerNorm.bias", Copy),
    r("target.mlm_linear_2.weight", concat!(v2!(mlm_2), ".weight"), "predictions.decoder.weight", Decoder),
    r("target.mlm_linear_2.bias", concat!(v2!(mlm_2), ".bias"), "predictions.bias", Copy),
    r("target.mlm_linear_2.bias", concat!(v2!(mlm_2), ".bias"), "predictions.decoder.bias", HfDuplicate),
];

/// ALBERT's sentence-order head.
#[rustfmt::skip]
const ALBERT_SOP: [Row; 4] = [
    alt("target.sop_linear_1.weight", concat!(v2!(sp_1), ".weight"), "target.sp_linear_1.weight", "albert.pooler.weight"),
    alt("target.sop_linear_1.bias", concat!(v2!(sp_1), ".bias"), "target.sp_linear_1.bias", "albert.pooler.bias"),
    alt("target.sop_linear_2.weight", concat!(v2!(sp_2), ".weight"), "target.sp_linear_2.weight", "sop_classifier.classifier.weight"),
    alt("target.sop_linear_2.bias", concat!(v2!(sp_2), ".bias"), "target.sp_linear_2.bias", "sop_classifier.classifier.bias"),
];

/// A fine-tuned ALBERT classifier's head (`AlbertForSequenceClassification`: the pooler is
/// dense + tanh on the first token, as UER's `output_layer_1`).
#[rustfmt::skip]
const ALBERT_CLASSIFIER: [Row; 4] = [
    s(concat!(v2!(cls_1), ".weight"), "albert.pooler.weight", Copy),
    s(concat!(v2!(cls_1), ".bias"), "albert.pooler.bias", Copy),
    s(concat!(v2!(cls_2), ".weight"), "classifier.weight", Copy),
    s(concat!(v2!(cls_2), ".bias"), "classifier.bias", Copy),
];

/// A block of rows; `per_layer` blocks are instantiated for every layer index.
#[derive(Debug, Clone, Copy)]
pub struct Block {
    pub rows: &'static [Row],
    pub per_layer: bool,
}

const fn once(rows: &'static [Row]) -> Block {
    Block {
        rows,
        per_layer: false,
    }
}
const fn layers(rows: &'static [Row]) -> Block {
    Block {
        rows,
        per_layer: true,
    }
}

const BERT_MLM_TABLE: &[Block] = &[once(&BERT_EMBEDDINGS), layers(&BERT_LAYER), once(&BERT_MLM)];
const BERT_PRETRAINING_TABLE: &[Block] = &[
    once(&BERT_EMBEDDINGS),
    layers(&BERT_LAYER),
    once(&BERT_MLM),
    once(&BERT_NSP),
];
const BERT_CLASSIFIER_TABLE: &[Block] = &[
    once(&BERT_EMBEDDINGS),
    layers(&BERT_LAYER),
    once(&CLASSIFIER),
];
const GPT2_TABLE: &[Block] = &[
    once(&GPT2_EMBEDDINGS),
    layers(&GPT2_LAYER),
    once(&GPT2_FINAL_LN),
    once(&GPT2_LM),
];
const GPT2_CLASSIFIER_TABLE: &[Block] = &[
    once(&GPT2_EMBEDDINGS),
    layers(&GPT2_LAYER),
    once(&GPT2_FINAL_LN),
    once(&GPT2_CLASSIFIER),
];
const LEGACY_GPT_TABLE: &[Block] = &[
    once(&BERT_EMBEDDINGS),
    layers(&BERT_LAYER),
    once(&LEGACY_LM),
];
const LEGACY_LSTM_TABLE: &[Block] = &[
    once(&BERT_EMBEDDINGS),
    layers(&LSTM_LAYER),
    once(&LEGACY_LM),
];
const LEGACY_LSTM_CLS_TABLE: &[Block] = &[
    once(&BERT_EMBEDDINGS),
    layers(&LSTM_LAYER),
    once(&CLS_TARGET),
];
const LEGACY_LSTM_LM_CLS_TABLE: &[Block] = &[
    once(&BERT_EMBEDDINGS),
    layers(&LSTM_LAYER),
    once(&LEGACY_LM),
    once(&CLS_TARGET),
];
const LSTM_CLASSIFIER_TABLE: &[Block] = &[
    once(&BERT_EMBEDDINGS),
    layers(&LSTM_LAYER),
    once(&CLASSIFIER),
];
const BERT_CLS_TARGET_TABLE: &[Block] = &[
    once(&BERT_EMBEDDINGS),
    layers(&BERT_LAYER),
    once(&CLS_TARGET),
];
const ALBERT_TABLE: &[Block] = &[
    once(&ALBERT_EMBEDDINGS),
    once(&ALBERT_ENCODER),
    once(&ALBERT_MLM),
    once(&ALBERT_SOP),
];
const ALBERT_CLASSIFIER_TABLE: &[Block] = &[
    once(&ALBERT_EMBEDDINGS),
    once(&ALBERT_ENCODER),
    once(&ALBERT_CLASSIFIER),
];

/// The table of a family: its blocks in file order. The first row is the word embedding.
pub fn table(family: Layout) -> &'static [Block] {
    match family {
        Layout::BertMlm => BERT_MLM_TABLE,
        Layout::BertPretraining => BERT_PRETRAINING_TABLE,
        Layout::BertClassifier => BERT_CLASSIFIER_TABLE,
        Layout::Gpt2 => GPT2_TABLE,
        Layout::Albert => ALBERT_TABLE,
        Layout::AlbertClassifier => ALBERT_CLASSIFIER_TABLE,
        Layout::Gpt2Classifier => GPT2_CLASSIFIER_TABLE,
        Layout::LegacyGpt => LEGACY_GPT_TABLE,
        Layout::BertClsTarget => BERT_CLS_TARGET_TABLE,
        Layout::LegacyLstm => LEGACY_LSTM_TABLE,
        Layout::LegacyLstmCls => LEGACY_LSTM_CLS_TABLE,
        Layout::LegacyLstmLmCls => LEGACY_LSTM_LM_CLS_TABLE,
        Layout::LstmClassifier => LSTM_CLASSIFIER_TABLE,
    }
}

/// HF-side spellings read as the canonical ones (prefix rewrites, applied to BERT-family
/// input only): RoBERTa-prefixed BERTs and `RobertaForMaskedLM`'s `lm_head`.
pub const HF_BERT_PREFIX_ALIASES: &[(&str, &str)] = &[
    ("roberta.", "bert."),
    ("lm_head.dense.", "cls.predictions.transform.dense."),
    (
        "lm_head.layer_norm.",
        "cls.predictions.transform.LayerNorm.",
    ),
    ("lm_head.decoder.", "cls.predictions.decoder."),
    ("lm_head.bias", "cls.predictions.bias"),
];

/// HF LayerNorm parameter names of old transformers (TF-converted checkpoints).
pub const HF_LAYERNORM_ALIASES: &[(&str, &str)] = &[
    ("LayerNorm.gamma", "LayerNorm.weight"),
    ("LayerNorm.beta", "LayerNorm.bias"),
];

/// HF tensors that are buffers, not weights: dropped going to UER, with the reason.
/// Matched as suffixes.
pub const HF_BUFFERS: &[(&str, &str)] = &[
    (
        ".attn.bias",
        "GPT-2 causal-mask buffer (lower-triangular), rebuilt by the model",
    ),
    (
        ".attn.masked_bias",
        "GPT-2 masking constant buffer of old transformers",
    ),
    (
        "embeddings.position_ids",
        "position-id buffer of old transformers",
    ),
];

/// Substitutes the layer index into a pattern.
pub fn instantiate(pattern: &str, layer: usize) -> String {
    pattern.replace("{i}", &layer.to_string())
}

// Detection: which layout a checkpoint is, from its keys ([`super::family`]).

/// Marker keys, in order: a checkpoint holding any of a row's first keys, and all of its
/// second ones, is that family.
pub(crate) type Markers = &'static [(Layout, &'static [&'static str], &'static [&'static str])];

pub(crate) const UER_MARKERS: Markers = &[
    // Classifier heads on UER-py 2019's LSTM: run_classifier's, then its cls target.
    (
        Layout::LstmClassifier,
        &["output_layer_1.weight"],
        &["encoder.rnn.weight_ih_l0"],
    ),
    (
        Layout::LegacyLstmLmCls,
        &["target.output_layer.weight"],
        &["encoder.rnn.weight_ih_l0", "target.linear_1.weight"],
    ),
    (
        Layout::LegacyLstmLmCls,
        &["target.lm.output_layer.weight"],
        &["encoder.rnn.weight_ih_l0", "target.cls.linear_1.weight"],
    ),
    (
        Layout::LegacyLstmCls,
        &["target.linear_1.weight", "target.cls.linear_1.weight"],
        &["encoder.rnn.weight_ih_l0"],
    ),
    (
        Layout::AlbertClassifier,
        &["output_layer_1.weight"],
        &["encoder.linear.weight"],
    ),
    (
        Layout::Gpt2Classifier,
        &["output_layer_1.weight"],
        &["encoder.layer_norm.gamma"],
    ),
    (
        Layout::Albert,
        &[
            "encoder.linear.weight",
            "encoder.transformer.self_attn.linear_layers.0.weight",
        ],
        &[],
    ),
    // An LM on an LSTM encoder: UER-py 2019's LSTM language model.
    (
        Layout::LegacyLstm,
        &[
            "target.output_layer.weight",
            "target.lm.output_layer.weight",
        ],
        &["encoder.rnn.weight_ih_l0"],
    ),
    // An LM on BERT's embedding (with its LayerNorm): UER-py 2019's GPT, not GPT-2 (whose
    // embedding has no LayerNorm and whose encoder ends in one).
    (
        Layout::LegacyGpt,
        &[
            "target.output_layer.weight",
            "target.lm.output_layer.weight",
        ],
        &[
            "embedding.layer_norm.gamma",
            "encoder.transformer.0.layer_norm_1.gamma",
        ],
    ),
    (
        Layout::Gpt2,
        &[
            "target.output_layer.weight",
            "target.lm.output_layer.weight",
            "encoder.layer_norm.gamma",
        ],
        &[],
    ),
    (Layout::BertClassifier, &["output_layer_1.weight"], &[]),
    (
        Layout::BertClsTarget,
        &["target.linear_1.weight", "target.cls.linear_1.weight"],
        &["encoder.transformer.0.layer_norm_1.gamma"],
    ),
    (
        Layout::BertPretraining,
        &[
            "target.nsp_linear_1.weight",
            "target.sp.linear_1.weight",
            "target.sp_linear_1.weight",
        ],
        &[],
    ),
    (
        Layout::BertMlm,
        &["target.mlm_linear_1.weight", "target.mlm.linear_1.weight"],
        &[],
    ),
];

pub(crate) const HF_MARKERS: Markers = &[
    (
        Layout::AlbertClassifier,
        &["classifier.weight"],
        &["albert.embeddings.word_embeddings.weight"],
    ),
    (
        Layout::Albert,
        &["albert.embeddings.word_embeddings.weight"],
        &[],
    ),
    (Layout::Gpt2, &["transformer.wte.weight"], &[]),
    (Layout::BertClassifier, &["classifier.weight"], &[]),
    (
        Layout::BertPretraining,
        &["cls.seq_relationship.weight"],
        &[],
    ),
    (
        Layout::BertMlm,
        &[
            "cls.predictions.transform.dense.weight",
            "cls.predictions.decoder.weight",
        ],
        &[],
    ),
];

/// Word-embedding key of each UER generation.
pub(crate) const UER_NAMING_MARKERS: &[(Naming, &str)] =
    &[(Naming::V1, v1!(word)), (Naming::V2, v2!(word))];

/// The roots of UER's keys (`embedding.`, `encoder.transformer…`, `encoder.rnn.`): a key set
/// with one of them is UER's.
pub(crate) const UER_ROOTS: &[&str] = &["embedding.", "encoder.transformer", "encoder.rnn."];

/// The root of UER's pretraining heads (`target.mlm.…`, `target.sp.…`, `target.lm.…`).
pub const UER_TARGET_ROOT: &str = "target.";

/// The roots of Huggingface keys of the families converted (BERT, GPT-2, ALBERT).
pub const HF_ROOTS: &[&str] = &["bert.", "transformer.", "albert."];

/// The 2022 spelling of the sentence-prediction head (`target.sp_linear_*`), read as v1.
pub(crate) const UER_SP_2022: &str = "target.sp_linear_";

/// Where the layer index follows, per side and family ([`LayerPrefixes`]).
pub(crate) struct LayerPrefixes {
    pub lstm: &'static str,
    pub uer: &'static str,
    pub hf_gpt2: &'static str,
    pub hf_bert: &'static str,
}

pub(crate) const LAYER_PREFIXES: LayerPrefixes = LayerPrefixes {
    lstm: "encoder.rnn.weight_ih_l",
    uer: "encoder.transformer.",
    hf_gpt2: "transformer.h.",
    hf_bert: "bert.encoder.layer.",
};

// Shape checks ([`super::shapes`]): rows match key suffixes.

/// (key suffix, shape symbols).
#[rustfmt::skip]
pub(crate) const SHAPES: &[(&str, &[char])] = &[
    // Embeddings, naming v1 then v2.
    ("embedding.word_embedding.weight", &['V', 'E']),
    ("embedding.position_embedding.weight", &['P', 'E']),
    ("embedding.segment_embedding.weight", &['3', 'E']),
    ("embedding.word.embedding.weight", &['V', 'E']),
    ("embedding.pos.embedding.weight", &['P', 'E']),
    ("embedding.seg.embedding.weight", &['3', 'E']),
    ("embedding.layer_norm.gamma", &['E']),
    ("embedding.layer_norm.beta", &['E']),
    // A transformer layer (BERT, RoBERTa, GPT-2, ALBERT's shared layer).
    ("self_attn.linear_layers.0.weight", &['H', 'H']),
    ("self_attn.linear_layers.1.weight", &['H', 'H']),
    ("self_attn.linear_layers.2.weight", &['H', 'H']),
    ("self_attn.linear_layers.0.bias", &['H']),
    ("self_attn.linear_layers.1.bias", &['H']),
    ("self_attn.linear_layers.2.bias", &['H']),
    ("self_attn.final_linear.weight", &['H', 'H']),
    ("self_attn.final_linear.bias", &['H']),
    ("feed_forward.linear_1.weight", &['F', 'H']),
    ("feed_forward.linear_1.bias", &['F']),
    ("feed_forward.linear_2.weight", &['H', 'F']),
    ("feed_forward.linear_2.bias", &['H']),
    ("layer_norm_1.gamma", &['H']),
    ("layer_norm_1.beta", &['H']),
    ("layer_norm_2.gamma", &['H']),
    ("layer_norm_2.beta", &['H']),
];

// The HF config written beside a conversion ([`super::hf_config`]) takes its sizes from these
// tensors' shapes.

/// Which HF tensors give a model's sizes.
pub(crate) struct SizeKeys {
    /// The word embedding (`[vocab, emb]`).
    pub word: &'static str,
    /// ALBERT's embedding projection (`[hidden, emb]`), where the hidden size differs.
    pub projection: Option<&'static str>,
    /// The first feed-forward layer (its larger side is the feed-forward size).
    pub ffn: &'static str,
    /// The position embedding (`[positions, emb]`).
    pub pos: &'static str,
}

/// [`SizeKeys`] per HF family, and the classifier whose rows are the labels.
pub(crate) struct HfSizeKeys {
    pub gpt2: SizeKeys,
    pub albert: SizeKeys,
    pub bert: SizeKeys,
    pub classifier: &'static str,
}

pub(crate) const HF_SIZE_KEYS: HfSizeKeys = HfSizeKeys {
    gpt2: SizeKeys {
        word: "transformer.wte.weight",
        projection: None,
        ffn: "transformer.h.0.mlp.c_fc.weight",
        pos: "transformer.wpe.weight",
    },
    albert: SizeKeys {
        word: "albert.embeddings.word_embeddings.weight",
        projection: Some("albert.encoder.embedding_hidden_mapping_in.weight"),
        ffn: "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight",
        pos: "albert.embeddings.position_embeddings.weight",
    },
    bert: SizeKeys {
        word: "bert.embeddings.word_embeddings.weight",
        projection: None,
        ffn: "bert.encoder.layer.0.intermediate.dense.weight",
        pos: "bert.embeddings.position_embeddings.weight",
    },
    classifier: "classifier.weight",
};
