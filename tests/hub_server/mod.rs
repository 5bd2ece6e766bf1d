//! A small hand-written HTTP/1.1 server that behaves like the Huggingface hub, for tests and
//! the download benchmark: the hub on 127.0.0.1 answers `/resolve` with a 302 to a CDN on
//! 127.0.0.2 (a different host, as on the real hub) carrying `X-Repo-Commit`,
//! `X-Linked-Etag` and `X-Linked-Size`; small git files are served directly with their git
//! sha1 as `ETag`; unknown files get 404 with `X-Error-Code`. The CDN honours `Range`.
//! Faults are switched on per test: cut the connection after N body bytes, answer 200 to a
//! Range request, flip a byte, or send slowly. Every request is logged.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use sha1::Sha1;
use sha2::{Digest, Sha256};

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One file of the served repo.
#[derive(Clone)]
pub struct Served {
    pub content: Arc<Vec<u8>>,
    /// LFS files are redirected to the CDN and carry their sha256; git files are served by
    /// the hub itself with their git sha1.
    pub lfs: bool,
    etag: String,
}

impl Served {
    /// Hashes the content once: sha256 for LFS files, git blob sha1 otherwise.
    pub fn new(content: Arc<Vec<u8>>, lfs: bool) -> Served {
        let etag = if lfs {
            hex::encode(Sha256::digest(&content[..]))
        } else {
            let mut h = Sha1::new();
            h.update(format!("blob {}\0", content.len()).as_bytes());
            h.update(&content[..]);
            hex::encode(h.finalize())
        };
        Served { content, lfs, etag }
    }

    pub fn etag(&self) -> String {
        self.etag.clone()
    }
}

/// Faults, changeable while the server runs.
#[derive(Clone, Default)]
pub struct Faults {
    /// Cut the connection after this many body bytes, for the next `cut_times` content GETs.
    pub cut_after: Option<u64>,
    pub cut_times: u32,
    /// Answer 200 with the whole file to a Range request.
    pub ignore_range: bool,
    /// Flip one byte (the middle one) of every content body.
    pub corrupt: bool,
    /// Sleep this long after every 64 KiB of body.
    pub slow: Option<Duration>,
    /// The CDN answers every content GET with this status (e.g. 500) and an empty body.
    pub cdn_status: Option<u16>,
}

/// One logged request.
#[derive(Clone, Debug)]
pub struct Logged {
    pub host: &'static str,
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
    /// Body bytes written.
    pub body_bytes: u64,
    pub authorization: Option<String>,
}

struct State {
    /// Repo id → its files.
    repos: HashMap<String, HashMap<String, Served>>,
    faults: Mutex<Faults>,
    cuts_left: Mutex<u32>,
    /// Connections accepted and not yet logged.
    in_flight: AtomicU64,
    log: Mutex<Vec<Logged>>,
    cdn: Mutex<String>,
}

/// The running hub + CDN pair. Dropping it stops both accept loops.
pub struct HubServer {
    pub hub: SocketAddr,
    pub cdn: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
}

impl HubServer {
    /// Serves `files` as repo `repo` (e.g. `uer/test-model`) at revision `main` = [`COMMIT`].
    pub fn start(repo: &str, files: Vec<(&str, Served)>) -> HubServer {
        HubServer::start_repos(vec![(repo, files)])
    }

    /// Serves several repos, each at revision `main` = [`COMMIT`].
    pub fn start_repos(repos: Vec<(&str, Vec<(&str, Served)>)>) -> HubServer {
        let hub_listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let cdn_listener = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
        let hub = hub_listener.local_addr().unwrap();
        let cdn = cdn_listener.local_addr().unwrap();
        let state = Arc::new(State {
            repos: repos
                .into_iter()
                .map(|(repo, files)| {
                    let files = files.into_iter().map(|(p, s)| (p.to_string(), s));
                    (repo.to_string(), files.collect())
                })
                .collect(),
            faults: Mutex::new(Faults::default()),
            cuts_left: Mutex::new(0),
            in_flight: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            cdn: Mutex::new(format!("http://{cdn}")),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        for (listener, host) in [(hub_listener, "hub"), (cdn_listener, "cdn")] {
            let (state, stop, connections) = (state.clone(), stop.clone(), connections.clone());
            thread::spawn(move || accept_loop(listener, host, state, stop, connections));
        }
        HubServer {
            hub,
            cdn,
            state,
            stop,
            connections,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.hub)
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.state.cuts_left.lock().unwrap() = faults.cut_times;
        *self.state.faults.lock().unwrap() = faults;
    }

    /// Waits (bounded) until no request is being handled, so the log is complete.
    fn settle(&self) {
        for _ in 0..500 {
            if self.state.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self) -> Vec<Logged> {
        self.settle();
        self.state.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.settle();
        self.state.log.lock().unwrap().clear();
    }

    /// Content requests (GETs that returned file bytes, on either host).
    pub fn content_requests(&self) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|l| l.method == "GET" && (l.status == 200 || l.status == 206))
            .collect()
    }

    /// Total body bytes served by GETs.
    pub fn content_bytes(&self) -> u64 {
        self.content_requests().iter().map(|l| l.body_bytes).sum()
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake both accept loops.
        let _ = TcpStream::connect_timeout(&self.hub, Duration::from_millis(200));
        let _ = TcpStream::connect_timeout(&self.cdn, Duration::from_millis(200));
    }
}

fn accept_loop(
    listener: TcpListener,
    host: &'static str,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
) {
    // Bounded: ends when the server is dropped (or after 100k connections).
    for stream in listener.incoming().take(100_000) {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        connections.fetch_add(1, Ordering::SeqCst);
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        let state = state.clone();
        thread::spawn(move || {
            let _ = handle(stream, host, &state);
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

struct Req {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

fn read_request(stream: &TcpStream) -> Option<Req> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = HashMap::new();
    for _ in 0..100 {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some(Req {
        method,
        path,
        headers,
    })
}

/// Handles one request on one connection (`Connection: close`).
fn handle(mut stream: TcpStream, host: &'static str, state: &State) -> std::io::Result<()> {
    let Some(req) = read_request(&stream) else {
        return Ok(());
    };
    let faults = state.faults.lock().unwrap().clone();
    let mut entry = Logged {
        host,
        method: req.method.clone(),
        path: req.path.clone(),
        range: req.headers.get("range").cloned(),
        status: 0,
        body_bytes: 0,
        authorization: req.headers.get("authorization").cloned(),
    };
    let head = req.method == "HEAD";
    let result = if host == "hub" {
        serve_hub(&mut stream, state, &req, head, &faults, &mut entry)
    } else {
        serve_cdn(&mut stream, state, &req, head, &faults, &mut entry)
    };
    state.log.lock().unwrap().push(entry);
    let _ = stream.shutdown(Shutdown::Both);
    result
}

fn write_head(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    headers: &[(String, String)],
) -> std::io::Result<()> {
    let mut text = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes())
}

fn serve_hub(
    stream: &mut TcpStream,
    state: &State,
    req: &Req,
    head: bool,
    faults: &Faults,
    entry: &mut Logged,
) -> std::io::Result<()> {
    // /{org}/{name}/resolve/{rev}/{file...}
    let found = state.repos.iter().find_map(|(repo, files)| {
        let rest = req.path.strip_prefix(&format!("/{repo}/resolve/"))?;
        Some((rest, files))
    });
    let Some((rest, files)) = found else {
        entry.status = 404;
        return write_head(
            stream,
            404,
            "Not Found",
            &[
                ("X-Error-Code".into(), "RepoNotFound".into()),
                ("Content-Length".into(), "0".into()),
            ],
        );
    };
    let (rev, file) = rest.split_once('/').unwrap_or((rest, ""));
    if rev != "main" && rev != COMMIT {
        entry.status = 404;
        return write_head(
            stream,
            404,
            "Not Found",
            &[
                ("X-Error-Code".into(), "RevisionNotFound".into()),
                ("Content-Length".into(), "0".into()),
            ],
        );
    }
    let Some(served) = files.get(file) else {
        entry.status = 404;
        return write_head(
            stream,
            404,
            "Not Found",
            &[
                ("X-Error-Code".into(), "EntryNotFound".into()),
                ("X-Repo-Commit".into(), COMMIT.into()),
                ("Content-Length".into(), "0".into()),
            ],
        );
    };
    let etag = served.etag.clone();
    if served.lfs {
        let location = format!("{}/cdn/{etag}?sig=test", state.cdn.lock().unwrap());
        entry.status = 302;
        return write_head(
            stream,
            302,
            "Found",
            &[
                ("Location".into(), location),
                ("X-Repo-Commit".into(), COMMIT.into()),
                ("X-Linked-Etag".into(), format!("\"{etag}\"")),
                ("X-Linked-Size".into(), served.content.len().to_string()),
                ("ETag".into(), "\"pointer-etag\"".into()),
                ("Content-Length".into(), "0".into()),
            ],
        );
    }
    let extra = vec![
        ("X-Repo-Commit".to_string(), COMMIT.to_string()),
        ("ETag".to_string(), format!("\"{etag}\"")),
    ];
    serve_content(stream, state, served, req, head, faults, entry, extra)
}

fn serve_cdn(
    stream: &mut TcpStream,
    state: &State,
    req: &Req,
    head: bool,
    faults: &Faults,
    entry: &mut Logged,
) -> std::io::Result<()> {
    let sha = req
        .path
        .strip_prefix("/cdn/")
        .and_then(|p| p.split('?').next())
        .unwrap_or("");
    let served = state
        .repos
        .values()
        .flat_map(|files| files.values())
        .find(|s| s.lfs && s.etag == sha);
    if let (Some(code), Some(_), false) = (faults.cdn_status, served, head) {
        entry.status = code;
        return write_head(
            stream,
            code,
            "Injected",
            &[("Content-Length".into(), "0".into())],
        );
    }
    let Some(served) = served else {
        entry.status = 404;
        return write_head(
            stream,
            404,
            "Not Found",
            &[("Content-Length".into(), "0".into())],
        );
    };
    serve_content(stream, state, served, req, head, faults, entry, Vec::new())
}

#[allow(clippy::too_many_arguments)]
fn serve_content(
    stream: &mut TcpStream,
    state: &State,
    served: &Served,
    req: &Req,
    head: bool,
    faults: &Faults,
    entry: &mut Logged,
    mut headers: Vec<(String, String)>,
) -> std::io::Result<()> {
    let content = &served.content;
    let len = content.len() as u64;
    let range = req
        .headers
        .get("range")
        .filter(|_| !faults.ignore_range)
        .and_then(|r| parse_range(r, len));
    let (status, reason, start, end) = match range {
        Some(Ok((s, e))) => (206, "Partial Content", s, e),
        Some(Err(())) => {
            entry.status = 416;
            return write_head(
                stream,
                416,
                "Range Not Satisfiable",
                &[
                    ("Content-Range".into(), format!("bytes */{len}")),
                    ("Content-Length".into(), "0".into()),
                ],
            );
        }
        None => (200, "OK", 0, len),
    };
    headers.push(("Content-Length".into(), (end - start).to_string()));
    headers.push(("Accept-Ranges".into(), "bytes".into()));
    if status == 206 {
        headers.push((
            "Content-Range".into(),
            format!("bytes {start}-{}/{len}", end.saturating_sub(1)),
        ));
    }
    entry.status = status;
    write_head(stream, status, reason, &headers)?;
    if head {
        return Ok(());
    }
    let mut body: std::borrow::Cow<[u8]> =
        std::borrow::Cow::Borrowed(&content[start as usize..end as usize]);
    if faults.corrupt && !body.is_empty() {
        let mut owned = body.into_owned();
        let mid = owned.len() / 2;
        owned[mid] ^= 0x01;
        body = std::borrow::Cow::Owned(owned);
    }
    let mut limit = body.len() as u64;
    if let Some(cut) = faults.cut_after
        && take_cut(state)
    {
        limit = limit.min(cut);
    }
    let chunk = if faults.slow.is_some() {
        64 << 10
    } else {
        8 << 20
    };
    let mut sent = 0u64;
    while sent < limit {
        let n = chunk.min((limit - sent) as usize);
        let r = stream.write_all(&body[sent as usize..sent as usize + n]);
        if r.is_err() {
            break;
        }
        sent += n as u64;
        if let Some(d) = faults.slow {
            thread::sleep(d);
        }
    }
    entry.body_bytes = sent;
    Ok(())
}

/// Whether this content request is one of the cut ones (first `cut_times` after arming).
fn take_cut(state: &State) -> bool {
    let mut left = state.cuts_left.lock().unwrap();
    if *left > 0 {
        *left -= 1;
        true
    } else {
        false
    }
}

/// `bytes=a-` or `bytes=a-b` → `[a, b+1)`; `Err` when not satisfiable.
fn parse_range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = if b.trim().is_empty() {
        len
    } else {
        b.trim().parse::<u64>().ok()? + 1
    };
    if start >= len || end <= start {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(len))))
}
