//! TODO: module `convert` (see docs/architecture.md).
