//! The backend under test, and PostgreSQL databases made for one test and dropped after.

/// Whether the tests run on PostgreSQL (`CAIRN_TEST_BACKEND=postgres`) rather than SQLite.
pub fn backend_is_postgres() -> bool {
    std::env::var("CAIRN_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// The test server's administrative URL (`CAIRN_TEST_POSTGRES_URL`, default the local
/// server as user postgres).
pub fn admin_url() -> String {
    std::env::var("CAIRN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Runs statements on the PostgreSQL test server. It runs on its own thread and runtime,
/// so it works from sync code, from inside a runtime and from `Drop` alike.
pub fn pg_admin(sql: String) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
                .await
                .expect("connect to the test PostgreSQL server");
            tokio::spawn(conn);
            client.batch_execute(&sql).await.expect("admin statement");
        })
    })
    .join()
    .unwrap();
}

/// A suffix no other call in any test process on this machine returns (process id, clock,
/// counter), made of digits and `_`, so it fits database and bucket names.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A new, empty database on the PostgreSQL test server, dropped (`WITH (FORCE)`, so open
/// pools do not hold it) when this value is.
#[derive(Debug)]
pub struct PgDatabase {
    name: String,
    url: String,
}

impl PgDatabase {
    /// Creates `{prefix}_{unique suffix}`; the prefix tells which suite left a database
    /// behind if a test process is killed.
    pub fn create(prefix: &str) -> PgDatabase {
        let name = format!("{prefix}_{}", unique_suffix());
        pg_admin(format!("CREATE DATABASE {name}"));
        let url = database_url(&admin_url(), &name);
        PgDatabase { name, url }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL: the administrative URL with the database name replaced.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        pg_admin(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// `base` (a server URL, with or without a database path) pointed at database `name`.
fn database_url(base: &str, name: &str) -> String {
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    match base.rfind('/') {
        Some(i) if i >= authority_start => format!("{}/{name}", &base[..i]),
        _ => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_replaces_the_path_or_adds_one() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
    }

    #[test]
    fn suffixes_differ_and_fit_identifiers() {
        let (a, b) = (unique_suffix(), unique_suffix());
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_digit() || c == '_'), "{a}");
    }
}
