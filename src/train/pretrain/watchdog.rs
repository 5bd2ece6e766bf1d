//! The watchdog of a multi-node run: burn-collective's all-reduce has no timeout, so a node
//! that dies mid-run would leave the others waiting forever. The rendezvous connections
//! (node 0 to every node) stay open for the run and carry a heartbeat every
//! [`HEARTBEAT`]; a connection that closes, or stays silent for [`SILENT`], before its node
//! said `done` is a lost node. Node 0 tells the other nodes which node it lost.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often each node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// Silence after which a node counts as lost (a machine gone without closing its sockets).
pub const SILENT: Duration = Duration::from_secs(30);
/// How long node 0 waits at the end for the other nodes to say `done`.
const END_WAIT: Duration = Duration::from_secs(60);

struct Shared {
    me: usize,
    finished: AtomicBool,
    done: Mutex<BTreeSet<usize>>,
    changed: Condvar,
    lost: Mutex<Option<String>>,
    writers: Vec<(usize, Mutex<TcpStream>)>,
    on_lost: Option<fn(&str)>,
}

impl Shared {
    fn send(&self, line: &str) {
        for (_, w) in &self.writers {
            if let Ok(mut w) = w.lock() {
                let _ = w.write_all(line.as_bytes());
            }
        }
    }

    fn lost(&self, rank: usize, why: &str) {
        if self.finished.load(Ordering::SeqCst) {
            return;
        }
        let message = {
            let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
            if lost.is_some() {
                return;
            }
            let m = format!(
                "node {}: lost node {rank} ({why}); the run cannot go on: restart every node, with --resume from node 0's last checkpoint",
                self.me
            );
            *lost = Some(m.clone());
            m
        };
        self.changed.notify_all();
        if self.me == 0 {
            self.send(&format!("lost {rank}\n"));
        }
        if let Some(f) = self.on_lost {
            f(&message);
        }
    }
}

/// Watches the connections to the other nodes (node 0: to every node; the others: to
/// node 0), as `(their rank, stream)`.
pub(super) struct Watchdog {
    shared: Arc<Shared>,
}

impl Watchdog {
    pub(super) fn start(
        me: usize,
        streams: Vec<(usize, TcpStream)>,
        on_lost: Option<fn(&str)>,
    ) -> Watchdog {
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for (rank, s) in streams {
            if let Ok(w) = s.try_clone() {
                writers.push((rank, Mutex::new(w)));
                readers.push((rank, s));
            }
        }
        let shared = Arc::new(Shared {
            me,
            finished: AtomicBool::new(false),
            done: Mutex::new(BTreeSet::new()),
            changed: Condvar::new(),
            lost: Mutex::new(None),
            writers,
            on_lost,
        });
        for (rank, s) in readers {
            let shared = shared.clone();
            std::thread::spawn(move || watch(&shared, rank, s));
        }
        let beat = shared.clone();
        std::thread::spawn(move || {
            while !beat.finished.load(Ordering::SeqCst) {
                beat.send("hb\n");
                std::thread::sleep(HEARTBEAT);
            }
        });
        Watchdog { shared }
    }

    /// The lost node's message, if a node was lost.
    pub(super) fn lost(&self) -> Option<String> {
        self.shared
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// This node's run ended well: say `done`; node 0 then waits (bounded) for the other
    /// nodes' `done`, so that its orchestrator outlives their last requests.
    pub(super) fn finish(&self, nnodes: usize) {
        let s = &self.shared;
        s.send("done\n");
        if s.me == 0 {
            let deadline = Instant::now() + END_WAIT;
            let mut done = s.done.lock().unwrap_or_else(|e| e.into_inner());
            while done.len() + 1 < nnodes && self.lost().is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                done = match s.changed.wait_timeout(done, left.min(HEARTBEAT)) {
                    Ok((d, _)) => d,
                    Err(e) => e.into_inner().0,
                };
            }
        }
        s.finished.store(true, Ordering::SeqCst);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.finished.store(true, Ordering::SeqCst);
    }
}

fn watch(shared: &Shared, rank: usize, s: TcpStream) {
    let _ = s.set_read_timeout(Some(SILENT));
    let mut r = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        let said_done = || {
            shared
                .done
                .lock()
                .map(|d| d.contains(&rank))
                .unwrap_or(false)
        };
        match r.read_line(&mut line) {
            Ok(0) => {
                if !said_done() {
                    shared.lost(
                        rank,
                        "its connection closed: the process ended or was killed",
                    );
                }
                return;
            }
            Err(e) => {
                if !said_done() {
                    let why = if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) {
                        format!("silent for {} s", SILENT.as_secs())
                    } else {
                        format!("its connection failed: {e}")
                    };
                    shared.lost(rank, &why);
                }
                return;
            }
            Ok(_) => match line.trim() {
                "done" => {
                    if let Ok(mut d) = shared.done.lock() {
                        d.insert(rank);
                    }
                    shared.changed.notify_all();
                }
                other => {
                    if let Some(k) = other.strip_prefix("lost ").and_then(|k| k.parse().ok()) {
                        shared.lost(k, "node 0 lost it");
                    }
                }
            },
        }
        if shared.finished.load(Ordering::SeqCst) && said_done() {
            return;
        }
    }
}
