//! Pretraining across machines: one process per node, each with its own devices, gradients
//! all-reduced within and across nodes by burn-collective (its global orchestrator runs on
//! node 0).
//!
//! Ports, all from the master address `HOST:PORT`: `PORT` is the rendezvous (a plain TCP
//! exchange before training, in which node 0 compares every node's options and refuses a
//! mismatch, with a bounded wait for the nodes that have not joined), `PORT + 1` is
//! burn-collective's global orchestrator (websocket), and each node serves its tensors to
//! the others on `PORT + 2 + node rank` unless `node_address` names another port.

use super::checks::{check, check_resume};
use super::heads_init::untie_for_loading;
use super::parallel::{Peer, run_replicas};
use super::state::{OptimState, run_fingerprint};
use super::watchdog::Watchdog;
use super::{PretrainOptions, PretrainResult, StepReport};
use crate::checkpoint::Checkpoint;
use crate::model::{DeviceSpec, ModelConfig};
use crate::progress::Progress;
use crate::train::TrainError;
use crate::train::dataset::DatasetFile;
use burn::collective::{AllReduceStrategy, CollectiveConfig};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// This node's place in a multi-node run (torchrun's `--nnodes`, `--node-rank`,
/// `--master-addr`/`--master-port`).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Nodes in the run (processes, one per machine).
    pub nnodes: usize,
    /// This node, `0..nnodes`; node 0 runs the orchestrator and writes the checkpoints.
    pub node_rank: usize,
    /// Node 0's address as the other nodes reach it, `HOST:PORT`.
    pub master: String,
    /// This node's address as the other nodes reach it, `HOST` or `HOST:PORT` (default: the
    /// address of the interface that routes to the master, port `PORT + 2 + node_rank`).
    pub node_address: Option<String>,
    /// How long to wait for all nodes to join.
    pub join_timeout: Duration,
    /// Called (from a watchdog thread) with the error when a node is lost mid-run. The
    /// replicas are then blocked in burn-collective's all-reduce, which has no timeout, so
    /// this should end the process (the CLI removes its partial files and exits 1);
    /// without it the run stays blocked.
    pub on_lost: Option<fn(&str)>,
}

impl NodeOptions {
    /// The master's host and port.
    fn master(&self) -> Result<(String, u16), TrainError> {
        split_host_port(&self.master).ok_or_else(|| {
            TrainError::Options(format!(
                "--master-addr `{}` is not HOST:PORT (e.g. 10.0.0.1:29500); give it, or MASTER_ADDR and MASTER_PORT",
                self.master
            ))
        })
    }

    /// This node's host and data-service port.
    fn node(&self) -> Result<(String, u16), TrainError> {
        let (host, port) = self.master()?;
        let default_port = port.checked_add(2 + self.node_rank as u16).ok_or_else(|| {
            TrainError::Options(format!(
                "--master-addr port {port} is too high: the nodes use the ports after it"
            ))
        })?;
        match &self.node_address {
            Some(a) => match split_host_port(a) {
                Some((h, p)) => Ok((h, p)),
                None if !a.contains(':') => Ok((a.clone(), default_port)),
                None => Err(TrainError::Options(format!(
                    "--node-addr `{a}` is not HOST or HOST:PORT"
                ))),
            },
            None => Ok((local_host_towards(&host, port), default_port)),
        }
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    let port = p.parse().ok()?;
    (!h.is_empty()).then(|| (h.trim_matches(['[', ']']).to_string(), port))
}

/// The local address of the interface that routes to `host` (no packet is sent: a UDP
/// socket's `connect` only picks the route); 127.0.0.1 when none is found.
fn local_host_towards(host: &str, port: u16) -> String {
    let guess = || -> Option<String> {
        let target = (host, port).to_socket_addrs().ok()?.next()?;
        let bind: SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let s = UdpSocket::bind(bind).ok()?;
        s.connect(target).ok()?;
        Some(s.local_addr().ok()?.ip().to_string())
    };
    guess().unwrap_or_else(|| "127.0.0.1".into())
}

fn ws(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("ws://[{host}]:{port}")
    } else {
        format!("ws://{host}:{port}")
    }
}

/// What every node must share with node 0: the run's options, the devices per node, and
/// hashes of the starting weights and of the dataset.
pub fn node_fingerprint(
    ckpt: &Checkpoint,
    ds: &DatasetFile,
    opts: &PretrainOptions,
    resume: Option<&OptimState>,
    nnodes: usize,
    devices: &[DeviceSpec],
) -> BTreeMap<String, String> {
    let mut f = run_fingerprint(opts, ds);
    let mut model = Sha256::new();
    for (name, t) in &ckpt.tensors {
        model.update(name.as_bytes());
        model.update(format!("{:?}{:?}", t.dtype, t.shape).as_bytes());
        model.update(t.bytes());
    }
    let backend = devices
        .first()
        .map_or("none".into(), |d| d.backend().to_string());
    for (k, v) in [
        ("nnodes", nnodes.to_string()),
        ("devices per node", devices.len().to_string()),
        ("backend", backend),
        ("total-steps", opts.total_steps.to_string()),
        (
            "save-checkpoint-steps",
            opts.save_checkpoint_steps.to_string(),
        ),
        ("max-grad-norm", format!("{:?}", opts.max_grad_norm)),
        ("dropout", format!("{:?}", opts.dropout)),
        ("optimizer", format!("{:?}", opts.optimizer)),
        ("resume step", format!("{:?}", resume.map(|r| r.step))),
        ("model sha256", hex::encode(model.finalize())),
        ("dataset sha256", hex::encode(ds.sha256())),
    ] {
        f.insert(k.into(), v);
    }
    f
}

/// [`pretrain`](super::pretrain) as node `node.node_rank` of `node.nnodes`, data-parallel
/// over this node's `devices` (the same number on every node) and the other nodes'.
/// Every node is started with the same options; the global batch `opts.batch_size` is split
/// by rows over all `nnodes · devices` replicas in rank order (node 0's devices first), so
/// the run equals one process with all the devices (and, without dropout, one device).
/// Node 0 reports and writes the checkpoints; the others write nothing. Before training the
/// nodes meet at the master address: a node whose options, starting weights or dataset
/// differ from node 0's is refused (all nodes stop), and a node that has not joined within
/// `node.join_timeout` stops the others with an error naming it.
#[allow(clippy::too_many_arguments)]
pub fn pretrain_multi_node(
    ckpt: &Checkpoint,
    config: &ModelConfig,
    ds: &DatasetFile,
    opts: &PretrainOptions,
    output: &Path,
    resume: Option<OptimState>,
    devices: &[DeviceSpec],
    node: &NodeOptions,
    progress: &dyn Progress,
    on_report: &mut dyn FnMut(&StepReport),
) -> Result<PretrainResult, TrainError> {
    check(ds, config, ckpt, opts)?;
    check_resume(&resume, opts, ds)?;
    let me = node.node_rank;
    if node.nnodes < 2 || me >= node.nnodes {
        return Err(TrainError::Options(format!(
            "--node-rank {me} of --nnodes {}: a multi-node run needs at least two nodes, ranked 0 to {}",
            node.nnodes,
            node.nnodes.saturating_sub(1)
        )));
    }
    let local = devices.len();
    if local == 0 {
        return Err(TrainError::Options(format!("node {me}: no device given")));
    }
    if let Some(d) = devices.iter().find(|d| d.backend() != devices[0].backend()) {
        return Err(TrainError::Options(format!(
            "node {me}: --devices mixes {} and {}; give devices of one backend",
            devices[0].backend(),
            d.backend()
        )));
    }
    let world = local * node.nnodes;
    if opts.batch_size < world {
        return Err(TrainError::Options(format!(
            "--batch-size {} is smaller than the {world} devices of the {} nodes; each needs at least one row",
            opts.batch_size, node.nnodes
        )));
    }
    let (master_host, master_port) = node.master()?;
    let (node_host, data_port) = node.node()?;
    let orchestrator_port = master_port.checked_add(1).ok_or_else(|| {
        TrainError::Options(format!("--master-addr port {master_port} is too high"))
    })?;
    let ckpt = &untie_for_loading(ckpt, opts.target);
    let fingerprint = node_fingerprint(ckpt, ds, opts, resume.as_ref(), node.nnodes, devices);
    // burn-communication's servers install a tracing subscriber that prints their INFO logs
    // to stdout unless one is set (an application's own, set earlier, stays).
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    // The data service binds all interfaces; a port in use would only be logged by
    // burn-collective, and the run would hang.
    port_free(
        me,
        data_port,
        "its tensor service (--node-addr HOST:PORT picks another)",
    )?;
    let streams = if me == 0 {
        port_free(me, orchestrator_port, "the orchestrator (MASTER_PORT + 1)")?;
        start_orchestrator(orchestrator_port)?;
        rendezvous_master(node, master_port, &fingerprint)?
    } else {
        vec![(
            0,
            rendezvous_join(node, &master_host, master_port, &fingerprint)?,
        )]
    };
    let watchdog = Watchdog::start(me, streams, node.on_lost);
    // burn-collective's global ring slices each gradient along its largest dimension, one
    // slice per node, and refuses a smaller one (the sentence-prediction bias, [2], on three
    // nodes): then the tree. Every node decides alike (same model hash, same nnodes).
    let ring_fits = ckpt
        .tensors
        .iter()
        .all(|(_, t)| t.shape.iter().copied().max().unwrap_or(0) >= node.nnodes);
    let global = if ring_fits {
        AllReduceStrategy::Ring
    } else {
        AllReduceStrategy::Tree(2)
    };
    let config_c = CollectiveConfig::default()
        .with_global_all_reduce_strategy(global)
        .with_num_devices(local)
        .with_num_nodes(node.nnodes as u32)
        .with_global_address(parse_address(&ws(&master_host, orchestrator_port))?)
        .with_node_address(parse_address(&ws(&node_host, data_port))?)
        .with_data_service_port(data_port);
    let peers = (0..local)
        .map(|i| Peer {
            rank: me * local + i,
            world,
            config: config_c.clone(),
        })
        .collect();
    let r = if me == 0 {
        run_replicas(
            ckpt, config, ds, opts, output, resume, devices, peers, progress, on_report,
        )
    } else {
        let quiet = crate::progress::NoProgress;
        run_replicas(
            ckpt,
            config,
            ds,
            opts,
            output,
            resume,
            devices,
            peers,
            &quiet,
            &mut |_| {},
        )
    };
    match (r, watchdog.lost()) {
        (Ok(r), None) => {
            watchdog.finish(node.nnodes);
            match watchdog.lost() {
                Some(lost) => Err(TrainError::Options(lost)),
                None => Ok(r),
            }
        }
        // What failed in the all-reduce is the lost node.
        (_, Some(lost)) => Err(TrainError::Options(lost)),
        (Err(e), None) => Err(e),
    }
}

fn parse_address(s: &str) -> Result<burn_communication::Address, TrainError> {
    s.parse()
        .map_err(|e| TrainError::Options(format!("address `{s}`: {e}")))
}

fn port_free(me: usize, port: u16, what: &str) -> Result<(), TrainError> {
    TcpListener::bind(("0.0.0.0", port)).map(drop).map_err(|e| {
        TrainError::Options(format!(
            "node {me}: port {port} for {what} is not free ({e}); pick another --master-addr port"
        ))
    })
}

/// burn-collective's global orchestrator on its own thread and runtime, for the life of the
/// process. It returns on SIGINT/SIGTERM (burn-communication's shutdown signal), when the
/// CLI's own handler ends the process.
fn start_orchestrator(port: u16) -> Result<(), TrainError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| TrainError::Options(format!("node 0: the orchestrator's runtime: {e}")))?;
    std::thread::Builder::new()
        .name("uerzoo-orchestrator".into())
        .spawn(move || rt.block_on(burn_collective::start_global_orchestrator(port)))
        .map(drop)
        .map_err(|e| TrainError::Options(format!("node 0: the orchestrator's thread: {e}")))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Hello {
    rank: usize,
    fingerprint: BTreeMap<String, String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Answer {
    error: Option<String>,
}

fn send_line<T: serde::Serialize>(s: &mut TcpStream, v: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_string(v).map_err(std::io::Error::other)?;
    line.push('\n');
    s.write_all(line.as_bytes())
}

fn read_line<T: serde::de::DeserializeOwned>(s: &TcpStream) -> std::io::Result<T> {
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

/// Node 0: waits up to the join timeout for nodes 1..N, compares their fingerprints with its
/// own and answers every node (an empty answer: start).
fn rendezvous_master(
    node: &NodeOptions,
    port: u16,
    mine: &BTreeMap<String, String>,
) -> Result<Vec<(usize, TcpStream)>, TrainError> {
    let listener = TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
        TrainError::Options(format!(
            "node 0: cannot listen on the master port {port} ({e}); pick a free port with --master-addr or MASTER_PORT"
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| TrainError::Options(format!("node 0: master port {port}: {e}")))?;
    let deadline = Instant::now() + node.join_timeout;
    let mut joined: BTreeMap<usize, TcpStream> = BTreeMap::new();
    let mut refused: Option<String> = None;
    while joined.len() + 1 < node.nnodes && refused.is_none() {
        match listener.accept() {
            Ok((mut s, from)) => {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let hello: Hello = match read_line(&s) {
                    Ok(h) => h,
                    // Not a uerzoo node (or a port probe): ignored.
                    Err(_) => continue,
                };
                let r = hello.rank;
                let problem = if r == 0 || r >= node.nnodes {
                    Some(format!(
                        "node {from} says it is --node-rank {r}; ranks go from 1 to {} besides node 0",
                        node.nnodes - 1
                    ))
                } else if joined.contains_key(&r) {
                    Some(format!("two nodes say they are --node-rank {r}"))
                } else {
                    mismatch(r, mine, &hello.fingerprint)
                };
                match problem {
                    Some(p) => {
                        let _ = send_line(
                            &mut s,
                            &Answer {
                                error: Some(p.clone()),
                            },
                        );
                        refused = Some(p);
                    }
                    None => {
                        joined.insert(r, s);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    let missing: Vec<String> = (1..node.nnodes)
                        .filter(|r| !joined.contains_key(r))
                        .map(|r| r.to_string())
                        .collect();
                    refused = Some(format!(
                        "node(s) {} did not join within {} s (--join-timeout); start `uerzoo pretrain` with the same options and --node-rank {} --master-addr {} on them",
                        missing.join(", "),
                        node.join_timeout.as_secs(),
                        missing.join("/"),
                        node.master
                    ));
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Err(e) => {
                return Err(TrainError::Options(format!(
                    "node 0: master port {port}: {e}"
                )));
            }
        }
    }
    for s in joined.values_mut() {
        let _ = send_line(
            s,
            &Answer {
                error: refused.clone(),
            },
        );
    }
    match refused {
        Some(p) => Err(TrainError::Options(format!("multi-node run refused: {p}"))),
        None => Ok(joined.into_iter().collect()),
    }
}

/// The options in which node `rank` differs from node 0.
fn mismatch(
    rank: usize,
    mine: &BTreeMap<String, String>,
    theirs: &BTreeMap<String, String>,
) -> Option<String> {
    let keys: std::collections::BTreeSet<&String> = mine.keys().chain(theirs.keys()).collect();
    let none = String::from("(none)");
    let diff: Vec<String> = keys
        .into_iter()
        .filter_map(|k| {
            let (a, b) = (mine.get(k).unwrap_or(&none), theirs.get(k).unwrap_or(&none));
            (a != b).then(|| format!("{k}: node 0 has {a}, node {rank} has {b}"))
        })
        .collect();
    (!diff.is_empty()).then(|| {
        format!(
            "node {rank} differs from node 0 in {}; start every node with the same options, model and dataset",
            diff.join("; ")
        )
    })
}

/// Nodes 1..N: connect to node 0 (retrying until the join timeout), send the fingerprint and
/// wait for the answer.
fn rendezvous_join(
    node: &NodeOptions,
    host: &str,
    port: u16,
    mine: &BTreeMap<String, String>,
) -> Result<TcpStream, TrainError> {
    let me = node.node_rank;
    let deadline = Instant::now() + node.join_timeout;
    let master = &node.master;
    let mut stream = loop {
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map(|a| a.collect())
            .unwrap_or_default();
        let connected = addrs
            .iter()
            .find_map(|a| TcpStream::connect_timeout(a, Duration::from_secs(2)).ok());
        if let Some(s) = connected {
            break s;
        }
        if Instant::now() >= deadline {
            return Err(TrainError::Options(format!(
                "node {me}: node 0 did not answer at {master} within {} s (--join-timeout); start node 0 (--node-rank 0) with the same --master-addr, or check the address",
                node.join_timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let lost = |e: std::io::Error| {
        TrainError::Options(format!(
            "node {me}: lost node 0 at {master} before the start ({e})"
        ))
    };
    send_line(
        &mut stream,
        &Hello {
            rank: me,
            fingerprint: mine.clone(),
        },
    )
    .map_err(lost)?;
    // Node 0 answers once every node has joined, at the latest at its own join deadline.
    stream
        .set_read_timeout(Some(node.join_timeout + Duration::from_secs(30)))
        .map_err(lost)?;
    let answer: Answer = read_line(&stream).map_err(lost)?;
    match answer.error {
        Some(e) => Err(TrainError::Options(format!(
            "node {me}: node 0 refused the multi-node run: {e}"
        ))),
        None => Ok(stream),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            split_host_port("10.0.0.1:29500"),
            Some(("10.0.0.1".into(), 29500))
        );
        assert_eq!(split_host_port("[::1]:80"), Some(("::1".into(), 80)));
        assert_eq!(split_host_port("host"), None);
        assert_eq!(ws("::1", 3), "ws://[::1]:3");
        let n = NodeOptions {
            nnodes: 2,
            node_rank: 1,
            master: "127.0.0.1:4000".into(),
            node_address: Some("127.0.0.2".into()),
            join_timeout: Duration::from_secs(1),
            on_lost: None,
        };
        assert_eq!(n.node().unwrap(), ("127.0.0.2".into(), 4003));
        assert_eq!(
            local_host_towards("127.0.0.1", 4000),
            "127.0.0.1".to_string()
        );
    }

    #[test]
    fn mismatch_names_the_option_and_node() {
        let a: BTreeMap<String, String> = [("seed".to_string(), "7".to_string())].into();
        let b: BTreeMap<String, String> = [("seed".to_string(), "8".to_string())].into();
        let m = mismatch(1, &a, &b).unwrap();
        assert!(m.contains("seed: node 0 has 7, node 1 has 8"), "{m}");
        assert!(mismatch(1, &a, &a).is_none());
    }
}
