//! TODO: module `tokenizer` (see docs/architecture.md).
