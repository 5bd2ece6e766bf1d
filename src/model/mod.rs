//! TODO: module `model` (see docs/architecture.md).
