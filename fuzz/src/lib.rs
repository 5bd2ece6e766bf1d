//! The modules the fuzz targets read, compiled on their own (their source included by
//! path), so the fuzz build needs only their few dependencies, not burn and the rest of
//! uerzoo: the checkpoint readers (with the output module they write through) and the
//! dataset file format.
#![allow(dead_code, rustdoc::broken_intra_doc_links)]

#[path = "../../src/checkpoint/mod.rs"]
pub mod checkpoint;
#[path = "../../src/train/dataset/format.rs"]
pub mod dataset_format;
#[path = "../../src/output.rs"]
pub mod output;
