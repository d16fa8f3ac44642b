//! The integration-test harness: each [`TestApp`] is the real `cairn` binary, serving on
//! an ephemeral loopback port, with its own data directory (SQLite) or its own freshly
//! created PostgreSQL database when `CAIRN_TEST_BACKEND=postgres`.
#![allow(dead_code)] // each test module uses a different part of the harness

use reqwest::{header, Method, RequestBuilder, Response};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SCIM_JSON: &str = "application/scim+json";

pub use cairn_testkit::{backend_is_postgres, pg_admin, require};
use cairn_testkit::{unique_suffix, PgDatabase};

/// A database for one test: a SQLite file under a temporary directory, or a new
/// PostgreSQL database that is dropped with the `Deployment`.
pub struct Deployment {
    pub data_dir: tempfile::TempDir,
    /// `--database-url`, `None` for the SQLite default under `data_dir`.
    pub database_url: Option<String>,
    /// The PostgreSQL database, dropped with the `Deployment`.
    pg: Option<PgDatabase>,
    /// Environment for every `cairn` process of this deployment, server and CLI alike
    /// (the S3 vault's settings).
    pub env: Vec<(String, String)>,
    /// The S3-compatible server and bucket holding this deployment's vault; the server
    /// is stopped on drop.
    s3: Option<(S3Server, String)>,
}

impl Deployment {
    /// The backend under test (`CAIRN_TEST_BACKEND`).
    pub fn new() -> Self {
        if backend_is_postgres() {
            Self::postgres()
        } else {
            Self::sqlite()
        }
    }

    /// SQLite under a temporary data directory, whatever the backend under test.
    pub fn sqlite() -> Self {
        Deployment {
            data_dir: tempfile::tempdir().unwrap(),
            database_url: None,
            pg: None,
            env: Vec::new(),
            s3: None,
        }
    }

    /// A new PostgreSQL database, whatever the backend under test.
    pub fn postgres() -> Self {
        let db = PgDatabase::create("cairn_it");
        Deployment {
            data_dir: tempfile::tempdir().unwrap(),
            database_url: Some(db.url().to_owned()),
            pg: Some(db),
            env: Vec::new(),
            s3: None,
        }
    }

    /// Backup repositories in a bucket of a private S3-compatible server (moto's server
    /// mode, from PyPI: `requirements-dev.txt`) instead of the data directory.
    pub fn with_s3_vault(mut self) -> Self {
        let s3 = S3Server::start();
        let bucket = format!("cairn-it-{}", unique_suffix().replace('_', "-"));
        s3.create_bucket(&bucket);
        self.env.extend(
            [
                ("CAIRN_VAULT_URL", format!("s3://{bucket}/vault")),
                ("AWS_ENDPOINT", s3.endpoint.clone()),
                ("AWS_ALLOW_HTTP", "true".to_owned()),
                ("AWS_ACCESS_KEY_ID", "cairn-test".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "cairn-test-secret".to_owned()),
                ("AWS_REGION", "us-east-1".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        self.s3 = Some((s3, bucket));
        self
    }

    /// The objects stored for one account's repository, as keys relative to it
    /// (`config`, `data/ab/ab12…`) with their sizes, sorted; read from the data directory
    /// or the bucket, whichever holds the vault.
    pub fn vault_objects(&self, tenant: &str, account: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        match &self.s3 {
            Some((server, bucket)) => {
                let prefix = format!("vault/{tenant}/{account}/");
                for (key, size) in server.list(bucket, &prefix) {
                    let rel = key.strip_prefix(&prefix).unwrap().to_owned();
                    if rel != "cairn-repository" {
                        out.push((rel, size));
                    }
                }
            }
            None => {
                fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, u64)>) {
                    let Ok(entries) = std::fs::read_dir(dir) else {
                        return;
                    };
                    for e in entries {
                        let e = e.unwrap();
                        let name = e.file_name().to_string_lossy().into_owned();
                        let key = if rel.is_empty() {
                            name
                        } else {
                            format!("{rel}/{name}")
                        };
                        if e.file_type().unwrap().is_dir() {
                            if key != "tmp" {
                                walk(&e.path(), &key, out);
                            }
                        } else {
                            out.push((key, e.metadata().unwrap().len()));
                        }
                    }
                }
                let root = self
                    .data_dir
                    .path()
                    .join("vault")
                    .join(tenant)
                    .join(account);
                walk(&root, "", &mut out);
            }
        }
        out.sort();
        out
    }

    /// The S3 server and bucket of a deployment `with_s3_vault`.
    pub fn s3(&self) -> Option<(&S3Server, &str)> {
        self.s3.as_ref().map(|(s, b)| (s, b.as_str()))
    }

    /// The database as a `--database-url` value (`sqlite:PATH` for SQLite).
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!("sqlite:{}", self.data_dir.path().join("cairn.db").display()),
        }
    }

    /// The global flags that point a `cairn` command at this deployment.
    pub fn global_args(&self) -> Vec<String> {
        let mut v = vec![
            "--data-dir".to_owned(),
            self.data_dir.path().display().to_string(),
        ];
        if let Some(url) = &self.database_url {
            v.push("--database-url".into());
            v.push(url.clone());
        }
        v
    }
}

impl Default for Deployment {
    fn default() -> Self {
        Self::new()
    }
}

/// moto's S3 server on a loopback port, killed on drop. `moto_server` comes from the
/// test virtualenv (`scripts/test` puts `.venv/bin` first on PATH) or `CAIRN_MOTO_SERVER`.
pub struct S3Server {
    pub endpoint: String,
    child: Child,
}

impl S3Server {
    pub fn start() -> S3Server {
        let bin = std::env::var("CAIRN_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        for _ in 0..5 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "start {bin}: {e} (pip install 'moto[s3]' flask flask-cors; \
                         scripts/test installs it into .venv)"
                    )
                });
            let endpoint = format!("http://127.0.0.1:{port}");
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break; // lost the port to someone else: try another
                }
                if plain_http(&endpoint, "GET", "/moto-api/").is_ok_and(|r| r.0 == 200) {
                    return S3Server { endpoint, child };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("{bin} did not start");
    }

    fn call(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        plain_http(&self.endpoint, method, path)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.call("PUT", &format!("/{bucket}")).unwrap();
        assert_eq!(status, 200, "create bucket {bucket}: {body}");
    }

    /// Stores an empty object at `key` (PutObject).
    pub fn put_empty(&self, bucket: &str, key: &str) {
        let (status, body) = self.call("PUT", &format!("/{bucket}/{key}")).unwrap();
        assert_eq!(status, 200, "put {key}: {body}");
    }

    /// Stores `body` at `key` (PutObject), replacing what is there. A signed request
    /// through boto3 (installed with moto): moto refuses unsigned overwrites.
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let bin = std::env::var("CAIRN_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        // boto3 lives next to moto_server, in the same Python environment.
        let python = match std::path::Path::new(&bin).parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join("python"),
            _ => "python3".into(),
        };
        let script = "import boto3, sys\n\
            s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                aws_access_key_id='cairn-test', aws_secret_access_key='cairn-test-secret')\n\
            s3.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=sys.stdin.buffer.read())\n";
        let mut child = std::process::Command::new(python)
            .args(["-c", script, &self.endpoint, bucket, key])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), body).unwrap();
        assert!(child.wait().unwrap().success(), "put {key}");
    }

    /// The keys stored under a prefix of a bucket, with their sizes (ListObjectsV2).
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let (status, xml) = self
            .call(
                "GET",
                &format!("/{bucket}?list-type=2&max-keys=10000&prefix={prefix}"),
            )
            .unwrap();
        assert_eq!(status, 200, "{xml}");
        let mut out = Vec::new();
        for item in xml.split("<Contents>").skip(1) {
            let field = |tag: &str| {
                let start = item.find(&format!("<{tag}>")).unwrap() + tag.len() + 2;
                let end = item.find(&format!("</{tag}>")).unwrap();
                item[start..end].to_owned()
            };
            out.push((field("Key"), field("Size").parse().unwrap()));
        }
        out
    }
}

impl S3Server {
    /// The keys of the multipart uploads begun and neither completed nor aborted under a
    /// prefix of a bucket (ListMultipartUploads).
    pub fn multipart_uploads(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (status, xml) = self
            .call("GET", &format!("/{bucket}?uploads&prefix={prefix}"))
            .unwrap();
        assert_eq!(status, 200, "{xml}");
        xml.split("<Upload>")
            .skip(1)
            .map(|u| {
                let start = u.find("<Key>").unwrap() + 5;
                u[start..u.find("</Key>").unwrap()].to_owned()
            })
            .collect()
    }
}

/// One plain HTTP/1.1 request (std only: these run inside async tests, where a blocking
/// client's runtime may not be used). Returns status and body.
fn plain_http(endpoint: &str, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::Read;
    let host = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {text:.100}")))?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok((status, body.to_owned()))
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn cairn_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cairn")
}

/// The output of one CLI run.
#[derive(Debug)]
pub struct Cli {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    pub fn ok(self) -> Self {
        assert!(
            self.status.success(),
            "cairn failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl From<Output> for Cli {
    fn from(o: Output) -> Self {
        Cli {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// One running `cairn serve`.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`, also the public URL.
    pub base: String,
    pub client: reqwest::Client,
    child: Option<Child>,
    log: PathBuf,
    /// The auth cache's age limit this server runs with (zero: no cache).
    auth_cache: Duration,
    /// Declared last: dropped (PostgreSQL database removed) after the process is gone.
    pub deployment: std::sync::Arc<Deployment>,
}

/// Options for [`TestApp::spawn_with`].
#[derive(Clone, Default)]
pub struct Opts {
    /// Extra environment for `cairn serve` (e.g. `CAIRN_CLOCK_OFFSET_SECS`).
    pub env: Vec<(String, String)>,
    /// Extra arguments after `serve`.
    pub args: Vec<String>,
    /// Reach the deployment's database through this URL instead (e.g. a proxy).
    pub database_url: Option<String>,
    /// Serve with the production defaults of the auth cache and the SCIM rate limit
    /// instead of switching both off (see [`Opts::production`]).
    pub production_defaults: bool,
}

/// `CAIRN_AUTH_CACHE_MS`'s default (`cairn serve --help` hides it): how long a
/// settings or token change made elsewhere (the CLI) may take to reach a server.
pub const AUTH_CACHE_DEFAULT: Duration = Duration::from_millis(2000);

impl Opts {
    /// The auth cache and the SCIM rate limit at their production defaults (whatever the
    /// environment says), as identity providers meet the service.
    pub fn production() -> Opts {
        Opts {
            production_defaults: true,
            ..Opts::default()
        }
    }
}

impl TestApp {
    /// A fresh deployment and a server on it. Token and settings lookups are not cached
    /// (`CAIRN_AUTH_CACHE_MS=0`) so CLI changes show at once, and the SCIM rate limit is
    /// off (`CAIRN_SCIM_RATE_LIMIT=0`) so load and race tests measure the store; tests of
    /// the cache and the limit opt in, and the identity-provider replays run with both
    /// at their defaults ([`Opts::production`]).
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Opts::default()).await
    }

    pub async fn spawn_with(opts: Opts) -> TestApp {
        Self::spawn_on(std::sync::Arc::new(Deployment::new()), opts).await
    }

    /// A server on an existing deployment (a second instance, or a restart).
    pub async fn spawn_on(deployment: std::sync::Arc<Deployment>, opts: Opts) -> TestApp {
        let log = deployment
            .data_dir
            .path()
            .join(format!("serve-{}.log", unique_suffix()));
        let mut global = deployment.global_args();
        if let Some(url) = &opts.database_url {
            global.retain(|a| a != "--database-url" && Some(a) != deployment.database_url.as_ref());
            global.extend(["--database-url".to_owned(), url.clone()]);
        }
        let mut cmd = Command::new(cairn_bin());
        cmd.args(global)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(&opts.args)
            .env("CAIRN_LOG", "info")
            .env_remove("CAIRN_PUBLIC_URL")
            .env_remove("CAIRN_DATABASE_URL")
            .env_remove("CAIRN_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if opts.production_defaults {
            cmd.env_remove("CAIRN_AUTH_CACHE_MS")
                .env_remove("CAIRN_SCIM_RATE_LIMIT");
        } else {
            cmd.env("CAIRN_AUTH_CACHE_MS", "0")
                .env("CAIRN_SCIM_RATE_LIMIT", "0");
        }
        for (k, v) in deployment.env.iter().chain(&opts.env) {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start cairn serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {} // keep the pipe drained
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "cairn serve did not start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        TestApp {
            base,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            child: Some(child),
            log,
            auth_cache: if opts.production_defaults {
                AUTH_CACHE_DEFAULT
            } else {
                Duration::ZERO
            },
            deployment,
        }
    }

    /// Waits until a settings or token change made through the CLI has reached this
    /// server: at once without the auth cache, after its refresh with it (bounded by
    /// `CAIRN_AUTH_CACHE_MS`, the entries' age limit).
    pub async fn settings_applied(&self) {
        if !self.auth_cache.is_zero() {
            tokio::time::sleep(self.auth_cache + Duration::from_millis(200)).await;
        }
    }

    /// The server's log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        wait_timeout(&mut child, Duration::from_secs(30))
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs a `cairn` CLI command against this deployment (same database, public URL =
    /// this server).
    pub fn cli(&self, args: &[&str]) -> Cli {
        self.cli_stdin(args, None)
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: Option<&str>) -> Cli {
        run_cli(&self.deployment, Some(&self.base), args, stdin)
    }

    /// A tenant with SCIM enabled (Account Size 50 GB) and a token.
    pub fn tenant(&self, name: &str) -> Tenant {
        let t = self
            .cli(&["tenant", "create", "--name", name, "--json"])
            .ok()
            .json();
        let id = t["id"].as_str().unwrap().to_owned();
        self.cli(&["scim", "enable", "--tenant", &id, "--account-size-gb", "50"])
            .ok();
        let tok = self
            .cli(&["scim", "token", "--tenant", &id, "--json"])
            .ok()
            .json();
        assert_eq!(tok["tenant_url"], t["tenant_url"]);
        Tenant {
            id,
            url: t["tenant_url"].as_str().unwrap().to_owned(),
            token: tok["token"].as_str().unwrap().to_owned(),
            client: self.client.clone(),
        }
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(format!("{}{path}", self.base))
    }

    /// Signs in to the dashboard (the login form's CSRF cookie and field, a same-origin
    /// POST) and returns the session cookie as `name=value`.
    pub async fn sign_in(&self, email: &str, password: &str) -> String {
        let page = self.get("/login").send().await.unwrap();
        let login_cookie = cookie_set_by(page.headers(), "cairn_login").expect("login CSRF cookie");
        let csrf = csrf_of(&page.text().await.unwrap());
        let r = self
            .client
            .post(format!("{}/login", self.base))
            .header(header::ORIGIN, &self.base)
            .header(header::COOKIE, login_cookie)
            .form(&[("email", email), ("password", password), ("csrf", &csrf)])
            .send()
            .await
            .unwrap();
        let headers = r.headers().clone();
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        cookie_set_by(&headers, "cairn_session").expect("session cookie")
    }
}

/// The `name=value` of the cookie `name` that a response sets.
pub fn cookie_set_by(headers: &header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.split('=').next() == Some(name))
        .map(|c| c.split(';').next().unwrap().to_owned())
}

/// The value of the first hidden `csrf` field of a dashboard page.
pub fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("csrf field")
        .to_owned()
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the CLI against a deployment, without a server.
pub fn run_cli(
    deployment: &Deployment,
    public_url: Option<&str>,
    args: &[&str],
    stdin: Option<&str>,
) -> Cli {
    let mut cmd = Command::new(cairn_bin());
    cmd.args(deployment.global_args())
        .args(args)
        .env_remove("CAIRN_PUBLIC_URL")
        .env_remove("CAIRN_DATABASE_URL")
        .env_remove("CAIRN_DATA_DIR")
        .env("CAIRN_LOG", "warn")
        .envs(deployment.env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = public_url {
        cmd.args(["--public-url", url]);
    }
    let mut child = cmd.spawn().expect("run cairn");
    if let Some(input) = stdin {
        // A command that fails on its arguments may exit before reading its input: a
        // broken pipe here is not the test's concern, the exit status and output are.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    }
    child.wait_with_output().unwrap().into()
}

/// A tenant with SCIM enabled, its Tenant URL and API token.
#[derive(Clone)]
pub struct Tenant {
    pub id: String,
    /// The Tenant URL, e.g. `http://127.0.0.1:PORT/scim/v2/{id}` (no trailing slash).
    pub url: String,
    pub token: String,
    pub client: reqwest::Client,
}

impl Tenant {
    /// A request to `{Tenant URL}{path}` with `Authorization: Bearer TOKEN`.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.url))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
    }

    /// A request without any Authorization header.
    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url))
    }

    /// Sends a JSON body as `application/scim+json`.
    pub fn send(&self, method: Method, path: &str, body: &Value) -> RequestBuilder {
        self.req(method, path)
            .header(header::CONTENT_TYPE, SCIM_JSON)
            .body(body.to_string())
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::of(self.req(Method::GET, path).send().await.unwrap()).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        Reply::of(self.send(Method::POST, path, body).send().await.unwrap()).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        Reply::of(self.send(Method::PUT, path, body).send().await.unwrap()).await
    }
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        Reply::of(self.send(Method::PATCH, path, body).send().await.unwrap()).await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        Reply::of(self.req(Method::DELETE, path).send().await.unwrap()).await
    }

    /// Creates a user and returns its representation (asserting 201).
    pub async fn create_user(&self, body: &Value) -> Value {
        let r = self.post("/Users", body).await;
        assert_eq!(r.status, 201, "create: {}", r.text);
        r.json()
    }
}

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub async fn of(resp: Response) -> Reply {
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.unwrap(),
        }
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.text))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Asserts a SCIM error body with this status (and `scimType` when given).
    pub fn assert_scim_error(&self, status: u16, scim_type: Option<&str>) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        let v = self.json();
        assert_eq!(v["schemas"], serde_json::json!([ERROR_URN]), "{v}");
        assert_eq!(v["status"], status.to_string(), "{v}");
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
        if let Some(t) = scim_type {
            assert_eq!(v["scimType"], t, "{v}");
        }
        v
    }
}

/// The repository root (for scripts/).
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

// ---- helpers for the IdP replays (okta.rs, entra.rs, other_idps.rs) ----

/// Asserts `Content-Type: application/scim+json` (parameters such as `charset` allowed).
pub fn assert_scim_content_type(r: &Reply) {
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.split(';').next().unwrap_or("").trim() == SCIM_JSON,
        "Content-Type {ct:?} is not {SCIM_JSON} (status {}): {}",
        r.status,
        r.text
    );
}

/// Asserts a 200 ListResponse (RFC 7644 §3.4.2, integer counts) and returns it.
pub fn assert_list(r: &Reply) -> Value {
    assert_eq!(r.status, 200, "{}", r.text);
    assert_scim_content_type(r);
    let v = r.json();
    assert_eq!(v["schemas"], serde_json::json!([LIST_URN]), "{v}");
    for k in ["totalResults", "startIndex", "itemsPerPage"] {
        assert!(v[k].is_u64(), "{k} must be a JSON integer: {v}");
    }
    let res = v["Resources"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(v["itemsPerPage"], res.len(), "{v}");
    v
}

/// The user ids of a ListResponse, in order.
pub fn list_ids(v: &Value) -> Vec<String> {
    v["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts what every user representation must carry: what Okta and Entra read back, and
/// never `password` (RFC 7643 §4.1.1, `returned: never`).
pub fn assert_user_shape(u: &Value) {
    assert!(u["id"].as_str().is_some_and(|s| !s.is_empty()), "{u}");
    assert!(u["userName"].as_str().is_some_and(|s| !s.is_empty()), "{u}");
    assert!(
        u["active"].is_boolean(),
        "active must be a JSON boolean: {u}"
    );
    assert!(u.get("password").is_none(), "password returned: {u}");
    assert!(
        u["schemas"]
            .as_array()
            .is_some_and(|s| s.contains(&Value::from(USER_URN))),
        "{u}"
    );
    assert_eq!(u["meta"]["resourceType"], "User", "{u}");
    if let Some(emails) = u["emails"].as_array() {
        let mut types: Vec<&str> = emails.iter().filter_map(|e| e["type"].as_str()).collect();
        let n = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), n, "two emails with the same type: {u}");
    }
}

/// Sends one raw HTTP/1.1 request whose request target goes on the wire exactly as given
/// (e.g. raw `"` in a query, which URL libraries percent-encode), with `Connection: close`,
/// and reads the whole reply.
pub async fn raw_request(
    base: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = base.strip_prefix("http://").expect("http base URL");
    let authority = authority.split('/').next().unwrap();
    let mut s = tokio::net::TcpStream::connect(authority).await.unwrap();
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut raw_body = buf[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut map = header::HeaderMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            map.append(
                header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                header::HeaderValue::from_str(v.trim()).unwrap(),
            );
        }
    }
    let chunked = map
        .get(header::TRANSFER_ENCODING)
        .is_some_and(|v| v.to_str().unwrap_or("").contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &raw_body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size_text = String::from_utf8_lossy(&rest[..eol]).into_owned();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        raw_body = out;
    }
    Reply {
        status,
        headers: map,
        text: String::from_utf8_lossy(&raw_body).into_owned(),
    }
}

/// A self-signed P-256 certificate for 127.0.0.1 and localhost, and its key.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl CLI is needed to make a test certificate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}
