//! The README's quickstart is a test: its `sh` blocks run as written (the built `uerzoo` first
//! on `PATH`) against the loopback test hub, which serves the fixtures under the zoo's names,
//! with a temporary HF cache and working folder; the `text` block after a command block is
//! that block's stdout, compared line for line. A README command or its shown output that
//! changes fails here. Two allowances, so that the check holds on any machine: decimals are
//! compared to [`DECIMALS`] places and durations (`0.6 s`) not at all, and a shown line `...`
//! stands for any number of lines (for lines that name temporary files).
//!
//! The serve step is the one exception to "as written": the server is started on a free
//! loopback port (not the README's 8080), its address is read from its stdout, and the request
//! is sent with curl when curl is installed (skipped with a note otherwise).

mod common;
mod hub_server;

use hub_server::{HubServer, Served};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A command block must finish within this (fine-tuning the fixture takes seconds).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// The server must print its address within this.
const SERVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Decimal places compared: probabilities and losses differ in their last float digits
/// between machines (thread count, SIMD width change the order of sums).
const DECIMALS: usize = 3;

/// `text` with every decimal rounded to [`DECIMALS`] places and every duration (`1.3 s`)
/// written `<t> s`.
fn mask_numbers(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_alphanumeric());
        if !starts {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
            j += 1;
        }
        let number: String = chars[i..j].iter().collect();
        let duration = chars.get(j) == Some(&' ')
            && chars.get(j + 1) == Some(&'s')
            && chars.get(j + 2).is_none_or(|c| !c.is_alphanumeric());
        match number.parse::<f64>() {
            Ok(_) if duration => out.push_str("<t>"),
            Ok(x) if number.contains('.') => out.push_str(&format!("{x:.DECIMALS$}")),
            _ => out.push_str(&number),
        }
        i = j;
    }
    out
}

/// Whether `got` is `shown`, where a shown line `...` matches any number of lines.
fn matches(shown: &[&str], got: &[&str]) -> bool {
    match shown.split_first() {
        None => got.is_empty(),
        Some((&"...", rest)) => (0..=got.len()).any(|skip| matches(rest, &got[skip..])),
        Some((line, rest)) => got.split_first().is_some_and(|(g, got_rest)| {
            mask_numbers(line) == mask_numbers(g) && matches(rest, got_rest)
        }),
    }
}

/// The quickstart section of the README: from its heading to the next `## `.
fn quickstart() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find("\n## Quickstart")
        .expect("a `## Quickstart` section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

/// One command block and the output shown after it (if any).
struct Step {
    commands: String,
    shown: Option<String>,
}

/// Fenced blocks in order; a `text` block right after an `sh` block is its output.
fn steps(section: &str) -> Vec<Step> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let mut body = String::new();
        for inner in lines.by_ref() {
            if inner.trim_start().starts_with("```") {
                break;
            }
            body.push_str(inner);
            body.push('\n');
        }
        blocks.push((lang.trim().to_string(), body));
    }
    let mut steps: Vec<Step> = Vec::new();
    for (lang, body) in blocks {
        match lang.as_str() {
            "sh" => steps.push(Step {
                commands: body,
                shown: None,
            }),
            "text" => {
                let last = steps
                    .last_mut()
                    .expect("a `text` block follows an `sh` block");
                assert!(
                    last.shown.is_none(),
                    "two `text` blocks after one `sh` block"
                );
                last.shown = Some(body);
            }
            other => panic!("quickstart block of unexpected kind `{other}`"),
        }
    }
    steps
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files a registry entry's Hub repo lists, from a fixture's Huggingface folder.
fn repo_files(fixture: &str) -> Vec<(&'static str, Served)> {
    let dir = common::uer_fixture(fixture);
    let hf = dir.join("hf_by_uer_script");
    let git = |bytes: Vec<u8>| Served::new(Arc::new(bytes), false);
    vec![
        (
            "pytorch_model.bin",
            Served::new(Arc::new(read(&hf.join("pytorch_model.bin"))), true),
        ),
        ("config.json", git(read(&hf.join("config.json")))),
        ("vocab.txt", git(read(&dir.join("vocab.txt")))),
        (
            "tokenizer_config.json",
            git(br#"{"do_lower_case": false, "tokenizer_class": "BertTokenizer"}"#.to_vec()),
        ),
        (
            "special_tokens_map.json",
            git(br#"{"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}"#.to_vec()),
        ),
    ]
}

/// The test hub: the RoBERTa fixture as the Tiny miniature, the GPT-2 fixture as the couplet
/// model.
fn hub() -> HubServer {
    HubServer::start_repos(vec![
        ("uer/chinese_roberta_L-2_H-128", repo_files("roberta_v1")),
        ("uer/gpt2-chinese-couplet", repo_files("gpt2_v1")),
    ])
}

struct Sandbox {
    _dir: tempfile::TempDir,
    home: PathBuf,
    work: PathBuf,
    endpoint: String,
}

impl Sandbox {
    /// `sh -c SCRIPT` in the working folder, with the built binary first on `PATH`, the HF
    /// cache in the sandbox and the endpoint at the test hub.
    fn sh(&self, script: &str) -> Command {
        let bin = common::uerzoo_bin();
        let path = std::env::join_paths(
            std::iter::once(bin.parent().unwrap().to_path_buf()).chain(
                std::env::var_os("PATH")
                    .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .current_dir(&self.work)
            .env("PATH", path)
            .env("HF_HOME", &self.home)
            .env("HF_ENDPOINT", &self.endpoint)
            .env_remove("HF_HUB_CACHE")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("HF_TOKEN")
            .env_remove("UERZOO_SHARED")
            .stdin(Stdio::null());
        cmd
    }

    /// What a user's machine would print: the sandbox's HF home as the default one.
    fn normalise(&self, text: &str) -> String {
        let text = text.replace(&self.home.display().to_string(), "~/.cache/huggingface");
        let mut out: String = text
            .lines()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect();
        while out.ends_with("\n\n") {
            out.pop();
        }
        out
    }
}

/// Waits (bounded) for a child and returns its stdout and stderr.
fn wait_bounded(mut child: Child, what: &str) -> (bool, String, String) {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > BLOCK_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {BLOCK_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), out.join().unwrap(), err.join().unwrap())
}

/// Kills the server when the step ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The serve step: `uerzoo serve … --port 8080 &` started on a free port, then the block's
/// other lines (the curl calls) with the README's `localhost:8080` pointed at it.
fn run_serve_step(sandbox: &Sandbox, commands: &str) -> Option<String> {
    let serve_line = commands
        .lines()
        .find(|l| l.trim_start().starts_with("uerzoo serve"))
        .unwrap();
    let serve = serve_line.trim().trim_end_matches('&').trim();
    assert!(
        serve.contains("--port 8080"),
        "the quickstart serves on port 8080: {serve}"
    );
    let serve = serve.replace("--port 8080", "--port 0");
    let mut child = sandbox
        .sh(&format!("exec {serve}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn uerzoo serve");
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(at) = line.find("http://") {
                let addr = line[at + "http://".len()..]
                    .split(|c: char| c == '/' || c.is_whitespace())
                    .next()
                    .unwrap_or("")
                    .to_string();
                let _ = tx.send(addr);
                return;
            }
        }
    });
    let addr = rx
        .recv_timeout(SERVE_TIMEOUT)
        .expect("`uerzoo serve` printed its address");
    let rest: Vec<&str> = commands.lines().filter(|l| *l != serve_line).collect();
    let rest = rest.join("\n").replace("localhost:8080", &addr);
    if rest.contains("curl ") && Command::new("curl").arg("--version").output().is_err() {
        eprintln!("note: curl is not installed; the quickstart's curl call was not checked");
        return None;
    }
    let rest = rest.replace("curl ", "curl --max-time 60 ");
    let child = sandbox
        .sh(&rest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (ok, out, err) = wait_bounded(child, &rest);
    assert!(ok, "{rest}\nfailed:\n{err}");
    Some(out)
}

#[test]
fn shown_output_allows_float_noise_durations_and_elisions() {
    assert!(matches(&["loss 0.76012  1.3 s"], &["loss 0.76009  0.4 s"]));
    assert!(!matches(&["loss 0.7601"], &["loss 0.7801"]));
    assert!(matches(&["a", "...", "d"], &["a", "b", "c", "d"]));
    assert!(matches(&["a", "...", "b"], &["a", "b"]));
    assert!(!matches(&["a", "...", "d"], &["a", "b"]));
    assert!(!matches(&["epoch 2/2"], &["epoch 2/3"]));
}

#[test]
fn the_readme_quickstart_prints_what_it_shows() {
    let section = quickstart();
    let steps = steps(&section);
    assert!(steps.len() >= 5, "the quickstart has its steps");
    let server = hub();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox {
        home: dir.path().join("huggingface"),
        work: dir.path().join("work"),
        endpoint: server.endpoint(),
        _dir: dir,
    };
    std::fs::create_dir_all(&sandbox.work).unwrap();
    let mut failures = Vec::new();
    for step in &steps {
        let out = if step.commands.contains("uerzoo serve") {
            match run_serve_step(&sandbox, &step.commands) {
                Some(out) => out,
                None => continue,
            }
        } else {
            let child = sandbox
                .sh(&step.commands)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let (ok, out, err) = wait_bounded(child, &step.commands);
            assert!(ok, "{}failed:\n{err}", step.commands);
            out
        };
        let got = sandbox.normalise(&out);
        if let Some(shown) = &step.shown
            && !matches(
                &sandbox.normalise(shown).lines().collect::<Vec<_>>(),
                &got.lines().collect::<Vec<_>>(),
            )
        {
            failures.push(format!(
                "{}--- README shows:\n{shown}--- it prints:\n{got}",
                step.commands
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the README's quickstart drifted:\n\n{}",
        failures.join("\n")
    );
}
