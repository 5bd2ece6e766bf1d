//! Command entries that compose several layers and belong to none of them: `uerzoo
//! download`/`verify` and the cache lookups of `list`/`cache` (`zoo`: the hub, plus a UER
//! conversion for `--format uer`), the `uerzoo info` text (`info`: the registry entry, the
//! cache's copies and the generation presets), and `uerzoo tokenize` (`tokenize`: a model
//! opened by `resolve`, its tokenizer, a safetensors file of model inputs). It sits at the top
//! of the library, beside `generate`, `train` and `serve`; nothing below imports it.

pub mod info;
pub mod tokenize;
pub mod zoo;
