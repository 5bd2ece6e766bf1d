//! Request and response bodies, in one place. The OpenAI-compatible ones follow OpenAI's
//! API reference (completions, embeddings, models); unknown fields are ignored, so the
//! official clients' extra fields (`user`, `stream_options`, …) pass.

use serde::{Deserialize, Serialize};

/// A prompt or an input: a string, several strings, or token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Texts {
    One(String),
    Many(Vec<String>),
    Ids(Vec<u32>),
    ManyIds(Vec<Vec<u32>>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Texts,
    /// New tokens at most [OpenAI: 16].
    pub max_tokens: Option<usize>,
    /// 0 is greedy [default: the registry card's, else 1].
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Choices per prompt [1].
    pub n: Option<usize>,
    pub seed: Option<u64>,
    #[serde(default)]
    pub stream: bool,
    /// Extension: top-k filtering (1 = greedy; 0 = off) [default: the card's, else 70].
    pub top_k: Option<usize>,
    /// Extension: plain, poem, couplet, lyric, ancient [the registry entry's, else plain].
    pub preset: Option<String>,
    /// Extension: CTRL-style repetition penalty [1.0 = off].
    pub repetition_penalty: Option<f64>,
    /// Extension: lines of this many Chinese characters, each ended by `，。！？；` (as
    /// `uerzoo generate --line-length`; not with the couplet preset).
    pub line_length: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompletionChoice {
    pub text: String,
    pub index: usize,
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

/// A completion, or one server-sent event of a streamed one (`usage` only when done).
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: Texts,
    /// `float` (default) or `base64` (little-endian f32, what the OpenAI Python client asks
    /// for by default).
    pub encoding_format: Option<String>,
    /// Extension: `first` (the `[CLS]` state, default) or `mean` (over the text's tokens).
    pub pooling: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Embedding {
    pub object: &'static str,
    pub index: usize,
    pub embedding: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingResponse {
    pub object: &'static str,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
    /// Extension: the routes this model answers (`completions`, `embeddings`, `fill-mask`,
    /// `classify`, `tokenize`).
    pub capabilities: Vec<&'static str>,
    /// Extension: the longest sequence (position embeddings).
    pub max_positions: usize,
    /// Extension: the default prompt preset for completions.
    pub preset: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

/// `POST /v1/fill-mask`.
#[derive(Debug, Clone, Deserialize)]
pub struct FillMaskRequest {
    pub model: String,
    /// Text with one or more `[MASK]`.
    pub text: String,
    /// Candidates per mask [5].
    pub top_k: Option<usize>,
    /// Also give each candidate the whole text with its mask filled (`sequence`) [false];
    /// refused when text × masks × top_k is over the answer budget.
    #[serde(default)]
    pub sequences: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MaskCandidate {
    /// The filled token (`##` pieces keep their `##`).
    pub token: String,
    pub id: u32,
    pub score: f32,
    /// The mask's position in `[CLS] tokens [SEP]` (what the model sees).
    pub position: usize,
    /// With `sequences: true`: the text with this mask filled by the candidate (other masks
    /// kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MaskResult {
    /// Position in `[CLS] tokens [SEP]`.
    pub position: usize,
    pub candidates: Vec<MaskCandidate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FillMaskResponse {
    pub model: String,
    pub masks: Vec<MaskResult>,
}

/// `POST /v1/classify`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClassifyRequest {
    pub model: String,
    /// One text or several.
    pub input: Texts,
    /// Second texts for pair tasks, one per input.
    pub input_b: Option<Texts>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Classification {
    pub index: usize,
    /// The most probable label (`0..labels`, as `uerzoo predict` writes it).
    pub label: usize,
    pub probabilities: Vec<f32>,
    pub logits: Vec<f32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassifyResponse {
    pub model: String,
    pub data: Vec<Classification>,
}

/// `POST /v1/tokenize`.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenizeRequest {
    pub model: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenizeResponse {
    pub model: String,
    pub tokens: Vec<String>,
    pub ids: Vec<u32>,
    pub count: usize,
}
