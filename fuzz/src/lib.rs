//! The checkpoint module compiled on its own (its source included by path), so the fuzz
//! build needs only the module's few dependencies, not burn and the rest of uerzoo.
#![allow(dead_code, rustdoc::broken_intra_doc_links)]

#[path = "../../src/checkpoint/mod.rs"]
pub mod checkpoint;
