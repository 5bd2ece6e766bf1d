//! Progress reporting for long work. The library calls a [`Progress`]; the CLI decides
//! whether that is an indicatif bar, a line on stderr, or nothing.

/// Receives progress of one long task (a download, a conversion, an epoch).
pub trait Progress: Send + Sync {
    /// A new task of `total` units (bytes, steps…) starts; `message` names it.
    fn start(&self, _message: &str, _total: u64) {}
    /// `delta` more units are done.
    fn advance(&self, _delta: u64) {}
    /// The task is finished.
    fn finish(&self) {}
    /// Something the user should see while the task waits (a retry, a slow server).
    fn note(&self, _message: &str) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}
