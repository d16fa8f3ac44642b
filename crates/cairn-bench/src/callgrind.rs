//! Instruction counts per request: the server runs under `valgrind --tool=callgrind` and a
//! fixed number of requests of each operation is sent one after another over one
//! keep-alive connection. Between operations `callgrind_control` zeroes the counters and
//! dumps them, so each dump holds exactly one operation's requests (every server thread,
//! the SQLite writer and checkpointer included).
//!
//! Unlike requests per second, an instruction count repeats to within a fraction of a
//! percent whatever else the machine does, so it can tell a 3% change apart on a host whose
//! speed drifts 2× within a run. It does not see time spent waiting (fsync, locks, the
//! load generator's share of the CPU), and requests sent one at a time never form a
//! group-commit batch of more than one write: it measures CPU work per request, not
//! throughput. The requests are the same as the wrk scripts' (`wrk.rs`).

use crate::seed::okta_user;
use crate::wrk::round;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The pause before the counters are zeroed and before they are dumped. Work a request
/// leaves behind runs after its response (the provisioning inspector's writer stores its
/// queue every 500 ms); without the pause, an operation's dump would miss the last
/// batch of its own entries and count the previous operation's last batch instead.
const SETTLE: Duration = Duration::from_millis(1500);

/// One operation's requests, built for request number `k`.
pub struct Requests<'a> {
    pub scim: &'a str,
    pub floor_url: String,
    pub ids: &'a [String],
    pub n: usize,
    pub groups: Option<(&'a str, &'a str)>,
    /// Seeded users outside the big group: the members the group operations add.
    pub pool: &'a [String],
    pub run: String,
}

/// Method, URL and body of request `k` of `op`.
pub type Request = (reqwest::Method, String, Option<String>);

impl Requests<'_> {
    /// The operations measured, in order (post last: it adds users).
    pub fn ops(&self) -> Vec<&'static str> {
        let mut v = vec![
            "floor",
            "get_filter",
            "get_id",
            "page_first",
            "page_deep",
            "put_okta",
            "patch_entra",
        ];
        if self.groups.is_some() {
            v.extend(["group_add_1", "group_add_big"]);
        }
        v.push("post");
        v
    }

    pub fn build(&self, op: &str, k: usize) -> Result<Request> {
        use reqwest::Method;
        let scim = self.scim;
        // Spread over every seeded user, in an order the index does not predict.
        let i = (k * 7919 + 13) % self.n;
        let id = &self.ids[i];
        let name = crate::seed::user_name(i);
        Ok(match op {
            "floor" => (Method::GET, self.floor_url.clone(), None),
            "get_filter" => (
                Method::GET,
                format!("{scim}/Users?filter=userName%20eq%20%22u{i}%40bench.example%22"),
                None,
            ),
            "get_id" => (Method::GET, format!("{scim}/Users/{id}"), None),
            "page_first" => (
                Method::GET,
                format!("{scim}/Users?startIndex=1&count=100"),
                None,
            ),
            "page_deep" => (
                Method::GET,
                format!(
                    "{scim}/Users?startIndex={}&count=100",
                    self.n.saturating_sub(99).max(1)
                ),
                None,
            ),
            "put_okta" => {
                let mut body = okta_user(
                    &name,
                    &format!("Okta{k}"),
                    &format!("User {i}"),
                    &format!("Bench User {i}"),
                );
                body["id"] = json!(id);
                (
                    Method::PUT,
                    format!("{scim}/Users/{id}"),
                    Some(body.to_string()),
                )
            }
            "patch_entra" => {
                // Each pass over the users flips the value, so every request changes one.
                let v = if ((k * 7919 + 13) / self.n).is_multiple_of(2) {
                    "False"
                } else {
                    "True"
                };
                (
                    Method::PATCH,
                    format!("{scim}/Users/{id}"),
                    Some(
                        json!({
                            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                            "Operations": [{"op": "Replace", "path": "active", "value": v}]
                        })
                        .to_string(),
                    ),
                )
            }
            "group_add_1" | "group_add_big" => {
                let (small, large) = self.groups.context("groups were not seeded")?;
                let g = if op == "group_add_1" { small } else { large };
                let m = &self.pool[k % self.pool.len()];
                (
                    Method::PATCH,
                    format!("{scim}/Groups/{g}"),
                    Some(
                        json!({
                            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                            "Operations": [
                                {"op": "add", "path": "members", "value": [{"value": m}]},
                                {"op": "remove", "path": format!("members[value eq \"{m}\"]")}
                            ]
                        })
                        .to_string(),
                    ),
                )
            }
            "post" => {
                let name = format!("p{}-{k}@bench.example", self.run);
                (
                    Method::POST,
                    format!("{scim}/Users"),
                    Some(
                        okta_user(&name, "New", &format!("User {k}"), &format!("New User {k}"))
                            .to_string(),
                    ),
                )
            }
            other => bail!("no callgrind requests for operation {other}"),
        })
    }
}

/// The valgrind command line the server runs under; instrumentation starts switched off
/// so that start-up and the warm-up are not slowed down or counted.
pub fn wrapper(out_dir: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--instr-atstart=no".into(),
        // One dump per thread, so the background checkpointer can be told apart.
        "--separate-threads=yes".into(),
        format!(
            "--callgrind-out-file={}/callgrind.out.%p",
            out_dir.display()
        ),
    ]
}

/// `callgrind_control ARGS PID`, failing on a non-zero exit.
pub async fn control(args: &[&str], pid: u32) -> Result<()> {
    let out = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .await
        .context("running callgrind_control (is valgrind installed?)")?;
    if !out.status.success() {
        bail!(
            "callgrind_control {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// One operation's count.
pub struct Counted {
    pub op: String,
    pub requests: usize,
    /// Every server thread but the WAL checkpointer.
    pub instructions: u64,
    /// The checkpointer thread: it copies committed pages back into the database file
    /// whenever the clock lets it, so its share varies from run to run.
    pub checkpoint_instructions: u64,
    pub failed: usize,
    /// The operation's dumps, one per thread.
    pub dumps: Vec<PathBuf>,
    pub wall_secs: f64,
}

impl Counted {
    pub fn per_request(&self) -> f64 {
        self.instructions as f64 / self.requests.max(1) as f64
    }

    pub fn checkpoint_per_request(&self) -> f64 {
        self.checkpoint_instructions as f64 / self.requests.max(1) as f64
    }
}

/// The server under callgrind and the client that talks to it.
pub struct Target<'a> {
    pub pid: u32,
    /// Where callgrind writes its dumps.
    pub out_dir: &'a Path,
    pub client: reqwest::Client,
    pub token: &'a str,
}

impl Target<'_> {
    /// Sends requests `first..first + requests` of `op` one at a time; returns how many
    /// were not 2xx.
    async fn send(
        &self,
        reqs: &Requests<'_>,
        op: &str,
        first: usize,
        requests: usize,
    ) -> Result<usize> {
        let mut failed = 0;
        for k in first..first + requests {
            let (method, url, body) = reqs.build(op, k)?;
            let mut rb = self
                .client
                .request(method, &url)
                .header("Authorization", format!("Bearer {}", self.token))
                .header("Accept", "application/scim+json");
            if let Some(b) = body {
                rb = rb.header("Content-Type", "application/scim+json").body(b);
            }
            let resp = rb.send().await?;
            if !resp.status().is_success() {
                failed += 1;
            }
            resp.bytes().await?;
        }
        Ok(failed)
    }

    /// Sends `warmup` requests, settles, zeroes the counters, sends `requests` more,
    /// settles, dumps, and reads the dump back.
    pub async fn count(
        &self,
        reqs: &Requests<'_>,
        op: &str,
        warmup: usize,
        requests: usize,
    ) -> Result<Counted> {
        self.send(reqs, op, 0, warmup).await?;
        tokio::time::sleep(SETTLE).await;
        control(&["-z"], self.pid).await?;
        let started = Instant::now();
        let failed = self.send(reqs, op, warmup, requests).await?;
        let wall_secs = started.elapsed().as_secs_f64();
        tokio::time::sleep(SETTLE).await;
        let before = dumps(self.out_dir, self.pid)?;
        control(&["-d", op], self.pid).await?;
        let new: Vec<PathBuf> = dumps(self.out_dir, self.pid)?
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if new.is_empty() {
            bail!("callgrind wrote no dump");
        }
        let (mut instructions, mut checkpoint_instructions) = (0, 0);
        let mut named = Vec::new();
        for (i, dump) in new.iter().enumerate() {
            let to = self.out_dir.join(format!("{op}.{i}.callgrind"));
            std::fs::rename(dump, &to)?;
            let text = std::fs::read_to_string(&to)?;
            let n = total_instructions(&text)
                .with_context(|| format!("no totals in {}", to.display()))?;
            if is_checkpointer(&text) {
                checkpoint_instructions += n;
            } else {
                instructions += n;
            }
            named.push(to);
        }
        Ok(Counted {
            op: op.to_owned(),
            requests,
            instructions,
            checkpoint_instructions,
            failed,
            dumps: named,
            wall_secs,
        })
    }
}

/// Whether a thread's dump is the WAL checkpointer's (`writer::checkpoint`).
fn is_checkpointer(dump: &str) -> bool {
    // Callgrind names a function once per dump, on whichever line mentions it first: its
    // own `fn=` or a caller's `cfn=`. Only the checkpoint thread runs it.
    dump.lines().any(|l| {
        (l.starts_with("fn=") || l.starts_with("cfn="))
            && l.ends_with("cairn_store::sqlite::writer::checkpoint")
    })
}

/// The total of a callgrind dump: its `totals:` (or `summary:`) line, first event (Ir).
pub fn total_instructions(dump: &str) -> Option<u64> {
    dump.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn dumps(dir: &Path, pid: u32) -> Result<Vec<PathBuf>> {
    // `callgrind.out.PID.N-TT`: dump N of thread TT (`--separate-threads`).
    let prefix = format!("callgrind.out.{pid}");
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect())
}

/// The table, with each operation's instructions against the floor's.
pub fn print(users: usize, counted: &[Counted]) {
    let floor = counted
        .iter()
        .find(|c| c.op == "floor")
        .map(Counted::per_request)
        .unwrap_or(0.0);
    println!("\n## callgrind, sqlite, {users} users: instructions per request");
    println!(
        "{:<14} {:>8} {:>14} {:>9} {:>16} {:>7}",
        "operation", "requests", "Ir/request", "× floor", "checkpointer", "failed"
    );
    for c in counted {
        let x = if floor > 0.0 {
            c.per_request() / floor
        } else {
            0.0
        };
        println!(
            "{:<14} {:>8} {:>14.0} {:>9.2} {:>16.0} {:>7}",
            c.op,
            c.requests,
            c.per_request(),
            x,
            c.checkpoint_per_request(),
            c.failed
        );
    }
}

pub fn to_json(users: usize, counted: &[Counted]) -> Value {
    let floor = counted
        .iter()
        .find(|c| c.op == "floor")
        .map(Counted::per_request)
        .unwrap_or(0.0);
    json!({
        "backend": "sqlite",
        "users": users,
        "method": "valgrind --tool=callgrind --separate-threads=yes; requests sent one at a time over one connection; counters zeroed before and dumped after each operation; instructions of every thread but the WAL checkpointer, whose share depends on timing and is given apart",
        "ops": counted.iter().map(|c| json!({
            "name": c.op,
            "requests": c.requests,
            "instructions": c.instructions,
            "checkpointer_instructions": c.checkpoint_instructions,
            "checkpointer_per_request": round(c.checkpoint_per_request(), 0),
            "instructions_per_request": round(c.per_request(), 0),
            "times_floor": if floor > 0.0 { round(c.per_request() / floor, 3) } else { 0.0 },
            "failed": c.failed,
            "dumps": c.dumps.iter().filter_map(|d| d.file_name().and_then(|n| n.to_str())).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpointer_thread_is_recognised() {
        assert!(is_checkpointer(
            "fn=(12) cairn_store::sqlite::writer::checkpoint\n1 2\n"
        ));
        // Named first where its caller calls it (a 2026-12-06 dump of the POST run).
        assert!(is_checkpointer(
            "fn=(1689) std::sys::backtrace::__rust_begin_short_backtrace\ncfn=(1690) cairn_store::sqlite::writer::checkpoint\ncalls=1 0\n"
        ));
        assert!(!is_checkpointer(
            "fn=(3) cairn_store::sqlite::writer::run\ncfn=(4) checkpoint_other\n"
        ));
    }

    #[test]
    fn totals_are_read_from_a_dump() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 1234\n\nfn=main\n1 1234\ntotals: 1234\n";
        assert_eq!(total_instructions(dump), Some(1234));
        assert_eq!(total_instructions("events: Ir\n"), None);
    }

    #[test]
    fn every_operation_builds_its_requests() {
        let ids: Vec<String> = (0..10).map(|i| format!("id{i}")).collect();
        let pool = vec!["m1".to_owned(), "m2".to_owned()];
        let reqs = Requests {
            scim: "http://h/scim/v2/t",
            floor_url: "http://h/_bench/floor".into(),
            ids: &ids,
            n: 10,
            groups: Some(("g1", "g2")),
            pool: &pool,
            run: "r".into(),
        };
        for op in reqs.ops() {
            let (_, url, body) = reqs.build(op, 3).unwrap();
            assert!(url.starts_with("http://h/"), "{op}: {url}");
            if let Some(b) = body {
                serde_json::from_str::<Value>(&b).unwrap();
            }
        }
        // Two posts never share a userName.
        let a = reqs.build("post", 1).unwrap().2.unwrap();
        let b = reqs.build("post", 2).unwrap().2.unwrap();
        assert_ne!(a, b);
        // The deep page starts near the end.
        assert!(reqs
            .build("page_deep", 0)
            .unwrap()
            .1
            .ends_with("startIndex=1&count=100"));
        assert!(reqs.build("nope", 0).is_err());
    }
}
