//! Content hashes of cached files: sha256 for LFS files, git blob sha1 for git files, and a
//! hashing thread so that a download is hashed while it streams.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// An expected content hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hash {
    /// sha256 of the content (LFS files; the `X-Linked-Etag`), 64 lowercase hex.
    Sha256(String),
    /// git blob sha1 (`sha1("blob <len>\0" + content)`; the `ETag` of git files), 40 hex.
    GitSha1(String),
}

impl Hash {
    /// Reads an etag (already normalised) as a hash: 64 hex is sha256, 40 hex is a git sha1.
    pub fn from_etag(etag: &str) -> Option<Hash> {
        let hex = etag.bytes().all(|b| b.is_ascii_hexdigit());
        match etag.len() {
            64 if hex => Some(Hash::Sha256(etag.to_ascii_lowercase())),
            40 if hex => Some(Hash::GitSha1(etag.to_ascii_lowercase())),
            _ => None,
        }
    }

    /// The hex digest.
    pub fn hex(&self) -> &str {
        match self {
            Hash::Sha256(h) | Hash::GitSha1(h) => h,
        }
    }

    /// `sha256` or `git-sha1`.
    pub fn kind(&self) -> &'static str {
        match self {
            Hash::Sha256(_) => "sha256",
            Hash::GitSha1(_) => "git-sha1",
        }
    }

    /// Hashes the file at `path` the same way and returns the hex digest.
    pub fn compute(&self, path: &Path) -> io::Result<String> {
        match self {
            Hash::Sha256(_) => sha256_file(path),
            Hash::GitSha1(_) => git_sha1_file(path),
        }
    }
}

const BUF: usize = 1 << 20;

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// git blob sha1 of a file, hex.
pub fn git_sha1_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {len}\0").as_bytes());
    let mut buf = vec![0u8; BUF];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

enum Msg {
    Data(Box<dyn AsRef<[u8]> + Send>),
    /// Hash the first `len` bytes of a file (the part downloaded by an earlier run).
    Prefix(std::path::PathBuf, u64),
    Reset,
}

/// A sha256 computed on its own thread while the download streams, so hashing and the
/// network overlap.
pub struct StreamHasher {
    tx: Option<mpsc::SyncSender<Msg>>,
    handle: Option<thread::JoinHandle<io::Result<String>>>,
}

impl StreamHasher {
    /// Starts the hashing thread.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::sync_channel::<Msg>(256);
        let handle = thread::spawn(move || {
            let mut hasher = Sha256::new();
            for msg in rx {
                match msg {
                    Msg::Data(b) => hasher.update((*b).as_ref()),
                    Msg::Reset => hasher = Sha256::new(),
                    Msg::Prefix(path, len) => {
                        let mut file = File::open(&path)?.take(len);
                        let mut buf = vec![0u8; BUF];
                        let mut done = 0u64;
                        loop {
                            let n = file.read(&mut buf)?;
                            if n == 0 {
                                break;
                            }
                            done += n as u64;
                            hasher.update(&buf[..n]);
                        }
                        if done != len {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "partial file shrank while hashing",
                            ));
                        }
                    }
                }
            }
            Ok(hex::encode(hasher.finalize()))
        });
        StreamHasher {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    fn send(&self, msg: Msg) {
        if let Some(tx) = &self.tx {
            // A closed channel means the thread failed; `finish` reports its error.
            let _ = tx.send(msg);
        }
    }

    /// Hashes the first `len` bytes of `path`.
    pub fn prefix(&self, path: &Path, len: u64) {
        if len > 0 {
            self.send(Msg::Prefix(path.to_path_buf(), len));
        }
    }

    /// Hashes `data` next.
    pub fn update(&self, data: impl AsRef<[u8]> + Send + 'static) {
        self.send(Msg::Data(Box::new(data)));
    }

    /// Forgets everything hashed so far (the server restarted the file).
    pub fn reset(&self) {
        self.send(Msg::Reset);
    }

    /// Waits for the thread and returns the hex digest.
    pub fn finish(mut self) -> io::Result<String> {
        drop(self.tx.take());
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(result)) => result,
            _ => Err(io::Error::other("hashing thread panicked")),
        }
    }
}

impl Default for StreamHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for StreamHasher {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
