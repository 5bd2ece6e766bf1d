//! TODO: module `registry` (see docs/architecture.md).
