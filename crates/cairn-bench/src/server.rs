//! The Cairn under test: a temporary deployment (SQLite data dir, or a PostgreSQL database
//! created and dropped here), the CLI calls that make a tenant and its token, and the
//! `cairn serve` child process with the bench floor mounted.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh deployment; dropping it removes the data dir and the PostgreSQL database.
pub struct Deployment {
    pub bin: PathBuf,
    pub data_dir: tempfile::TempDir,
    pg_db: Option<String>,
}

impl Deployment {
    pub async fn new(bin: &Path, postgres: bool) -> Result<Self> {
        let data_dir = tempfile::Builder::new().prefix("cairn-bench-").tempdir()?;
        let pg_db = if postgres {
            let name = format!(
                "cairn_bench_{}_{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis()
            );
            pg_admin(&format!("CREATE DATABASE {name}")).await?;
            Some(name)
        } else {
            None
        };
        Ok(Deployment {
            bin: bin.to_owned(),
            data_dir,
            pg_db,
        })
    }

    fn global_args(&self) -> Vec<String> {
        let mut v = vec![
            "--data-dir".to_owned(),
            self.data_dir.path().display().to_string(),
        ];
        if let Some(db) = &self.pg_db {
            v.push("--database-url".into());
            v.push(format!("postgres://postgres@127.0.0.1:5432/{db}"));
        }
        v
    }

    /// Runs one CLI command and parses its JSON output (`Null` when it prints none).
    pub async fn cli(&self, args: &[&str], public_url: &str) -> Result<Value> {
        self.run_cli(args, public_url, None).await
    }

    /// [`Deployment::cli`] with `input` on standard input (e.g. `--password-stdin`).
    pub async fn cli_stdin(&self, args: &[&str], public_url: &str, input: &str) -> Result<Value> {
        self.run_cli(args, public_url, Some(input)).await
    }

    async fn run_cli(&self, args: &[&str], public_url: &str, input: Option<&str>) -> Result<Value> {
        use tokio::io::AsyncWriteExt;
        let mut child = Command::new(&self.bin)
            .args(self.global_args())
            .args(["--public-url", public_url])
            .args(args)
            .env("CAIRN_LOG", "warn")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.bin.display()))?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(text.as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "cairn {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(serde_json::from_str(text.trim()).unwrap_or(Value::Null))
    }

    /// Starts `cairn serve --listen 127.0.0.1:0 --bench-floor` and waits for its address.
    pub async fn serve(&self) -> Result<Server> {
        self.serve_under(&[]).await
    }

    /// [`Self::serve`], with the binary run by `wrapper` (e.g. `valgrind --tool=callgrind`),
    /// which must exec it in the same process so that the pid is the server's.
    pub async fn serve_under(&self, wrapper: &[String]) -> Result<Server> {
        let mut cmd = match wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let mut child = cmd
            .args(self.global_args())
            .args(["serve", "--listen", "127.0.0.1:0", "--bench-floor"])
            .env("CAIRN_LOG", "warn")
            // The per-tenant request budget would measure the limiter, not the service.
            .env("CAIRN_SCIM_RATE_LIMIT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return Ok::<_, anyhow::Error>(addr.trim().to_owned());
                }
            }
            bail!("cairn serve exited before listening")
        })
        .await
        .context("cairn serve did not start within 120 s")??;
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("cairn serve has no pid"))?;
        Ok(Server { child, pid, base })
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if let Some(db) = self.pg_db.take() {
            // Drop runs outside the runtime's async context: a small runtime of its own.
            let sql = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
            let done = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(pg_admin(&sql)))
            })
            .join();
            if !matches!(done, Ok(Ok(Ok(())))) {
                eprintln!("warning: could not drop PostgreSQL database {db}");
            }
        }
    }
}

async fn pg_admin(sql: &str) -> Result<()> {
    let (client, conn) = tokio_postgres::connect(PG_ADMIN, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {PG_ADMIN}"))?;
    let task = tokio::spawn(conn);
    client.batch_execute(sql).await.context(sql.to_owned())?;
    drop(client);
    let _ = task.await;
    Ok(())
}

pub struct Server {
    child: Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Server {
    /// (VmHWM, VmRSS) in KiB from /proc/PID/status.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// SIGTERM (graceful shutdown), then wait up to 10 s before killing.
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
