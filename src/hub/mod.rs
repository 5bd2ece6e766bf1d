//! TODO: module `hub` (see docs/architecture.md).
