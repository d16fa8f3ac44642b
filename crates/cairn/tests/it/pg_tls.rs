//! TLS to PostgreSQL (`sslmode`, `sslrootcert` in `--database-url`; issue 18). A throwaway
//! PostgreSQL cluster on a loopback port takes only TLS connections (`hostssl` alone in
//! pg_hba.conf), with a server certificate for the name `localhost` signed by a CA the
//! test makes with the `openssl` CLI, so the test decides what is trusted. The cluster is
//! made with the local PostgreSQL's `initdb` and stopped when the test ends.

use crate::support::*;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory of PostgreSQL's server programs (`initdb`, `pg_ctl`): Debian's
/// /usr/lib/postgresql/N/bin (newest N), else the `PATH`.
fn pg_bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_default()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Runs a PostgreSQL program as the `postgres` user when the test runs as root (the
/// server refuses to run as root), else as the test's own user.
fn pg_cmd(program: &str) -> Command {
    let path = pg_bindir().join(program);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// A PostgreSQL cluster that accepts only TLS on 127.0.0.1, stopped on drop.
struct TlsCluster {
    dir: tempfile::TempDir,
    port: u16,
}

impl TlsCluster {
    fn start() -> TlsCluster {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A CA, and a server certificate from it for the DNS name `localhost` only (no
        // IP address), so that `verify-full` to 127.0.0.1 has a name that does not match.
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Cairn test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        // Another CA, which signed nothing here.
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "other.key",
                "-out",
                "other-ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Some other CA",
            ],
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // PostgreSQL refuses a key file others can read.
        run(Command::new("chmod").arg("600").arg(d.join("server.key")));
        if is_root() {
            run(Command::new("chown").args(["-R", "postgres:"]).arg(d));
        }
        run(pg_cmd("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(d.join("data")));
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\n",
            d.display(),
            d.join("server.pem").display(),
            d.join("server.key").display(),
        );
        let data = d.join("data");
        let mut pg_conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        pg_conf.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), pg_conf).unwrap();
        // TLS or nothing over TCP; the Unix socket (for psql below) stays open.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        run(pg_cmd("pg_ctl")
            .args(["start", "-w", "-t", "30", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(d.join("log")));
        TlsCluster { dir, port }
    }

    fn ca(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }

    fn other_ca(&self) -> String {
        self.dir.path().join("other-ca.pem").display().to_string()
    }

    /// A URL to database `db` through host name `host`, connecting to 127.0.0.1
    /// (`hostaddr`), with extra query parameters.
    fn url(&self, host: &str, db: &str, params: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/{db}?hostaddr=127.0.0.1&{params}",
            self.port
        )
    }

    fn create_db(&self, name: &str) {
        run(Command::new("psql")
            .args(["-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(format!("CREATE DATABASE {name}")));
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let _ = pg_cmd("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .output();
    }
}

/// `cairn tenant list --json` against `url`.
fn tenant_list(url: &str) -> Cli {
    let mut d = Deployment::sqlite();
    d.database_url = Some(url.to_owned());
    run_cli(&d, None, &["tenant", "list", "--json"], None)
}

#[test]
fn postgres_over_tls_with_libpq_sslmodes_and_db_copy() {
    let pg = TlsCluster::start();
    let ca = pg.ca();

    // Encrypted without checks: `require`, and libpq's default `prefer` (the server takes
    // nothing else, so connecting at all shows TLS was used).
    for params in ["sslmode=require", "application_name=cairn-test"] {
        let out = tenant_list(&pg.url("127.0.0.1", "postgres", params)).ok();
        assert_eq!(out.json(), serde_json::json!([]), "{params}");
    }
    // Checked: the chain to the CA and the host name.
    let full = format!("sslmode=verify-full&sslrootcert={ca}");
    tenant_list(&pg.url("localhost", "postgres", &full)).ok();
    // `verify-ca` checks the chain only: 127.0.0.1 is not in the certificate, yet it passes.
    tenant_list(&pg.url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .ok();

    // Refusals, each with a message that says why.
    let refused = |url: String, why: &[&str]| {
        let out = tenant_list(&url);
        assert!(!out.status.success(), "{url} connected: {}", out.stdout);
        assert!(
            why.iter().any(|w| out.stderr.contains(w)),
            "{url}: expected one of {why:?} in:\n{}",
            out.stderr
        );
        assert!(out.stderr.contains("PostgreSQL"), "{}", out.stderr);
    };
    // The certificate is for `localhost`, not 127.0.0.1.
    refused(
        pg.url("127.0.0.1", "postgres", &full),
        &["not valid for name"],
    );
    // Another CA (`require` with a root file checks the chain, as in libpq).
    for mode in ["verify-full", "verify-ca", "require"] {
        refused(
            pg.url(
                "localhost",
                "postgres",
                &format!("sslmode={mode}&sslrootcert={}", pg.other_ca()),
            ),
            &["UnknownIssuer", "unknown issuer"],
        );
    }
    // No `sslrootcert`: the system's roots, which do not include the test's CA (or there are
    // none on this machine).
    refused(
        pg.url("localhost", "postgres", "sslmode=verify-full"),
        &["UnknownIssuer", "no trusted root certificates"],
    );
    // A server that takes only TLS, asked for none.
    refused(
        pg.url("127.0.0.1", "postgres", "sslmode=disable"),
        &["no encryption"],
    );
    // A root file that does not exist.
    refused(
        pg.url(
            "localhost",
            "postgres",
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        ),
        &["/nonexistent/ca.pem"],
    );

    // `cairn db copy` to and from TLS URLs: SQLite → PostgreSQL (verify-full) → SQLite.
    let src = Deployment::sqlite();
    run_cli(
        &src,
        None,
        &["tenant", "create", "--name", "Acme", "--json"],
        None,
    )
    .ok();
    let src_url = format!("sqlite:{}", src.data_dir.path().join("cairn.db").display());
    pg.create_db("copy_target");
    let to = pg.url("localhost", "copy_target", &full);
    let out = run_cli(
        &Deployment::sqlite(),
        None,
        &["db", "copy", "--from", &src_url, "--to", &to, "--json"],
        None,
    )
    .ok()
    .json();
    assert_eq!(out["verified"], true, "{out}");
    assert_eq!(out["tables"]["tenants"], 1, "{out}");
    assert!(
        !out.to_string().contains(&ca),
        "the URL's parameters are not shown: {out}"
    );
    let back = Deployment::sqlite();
    let back_url = format!("sqlite:{}", back.data_dir.path().join("copy.db").display());
    let out = run_cli(
        &Deployment::sqlite(),
        None,
        &["db", "copy", "--from", &to, "--to", &back_url, "--json"],
        None,
    )
    .ok()
    .json();
    assert_eq!(out["tables"]["tenants"], 1, "{out}");
    let listed = tenant_list(&to).ok().json();
    assert_eq!(listed[0]["name"], "Acme", "{listed}");
    // And a copy to a TLS URL that fails the check writes nothing and says why.
    pg.create_db("copy_refused");
    let out = run_cli(
        &Deployment::sqlite(),
        None,
        &[
            "db",
            "copy",
            "--from",
            &src_url,
            "--to",
            &pg.url("127.0.0.1", "copy_refused", &full),
        ],
        None,
    );
    assert!(!out.status.success(), "{}", out.stdout);
    assert!(out.stderr.contains("not valid for name"), "{}", out.stderr);
}
