//! How fast the data directory's disk makes a small write durable. A durable create costs
//! at least one of these per commit, so the write rates of two machines compare only
//! beside this figure: it goes into every run's table and JSON.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Most rounds measured; fewer when they take longer than `BUDGET`.
const ROUNDS: usize = 200;
const BUDGET: Duration = Duration::from_secs(2);

/// Latency of one 4 KiB write followed by `fdatasync`, as SQLite's WAL commit does it.
#[derive(Clone, Debug, Default)]
pub struct Fsync {
    pub rounds: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Fsync {
    /// Durable writes per second one writer can make back to back (at the median).
    pub fn per_second(&self) -> f64 {
        if self.p50_ms > 0.0 {
            1000.0 / self.p50_ms
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "fdatasync_rounds": self.rounds,
            "fdatasync_p50_ms": crate::wrk::round(self.p50_ms, 3),
            "fdatasync_p99_ms": crate::wrk::round(self.p99_ms, 3),
        })
    }
}

/// Writes and syncs a scratch file in `dir` (removed afterwards), off the async runtime.
pub async fn measure(dir: &Path) -> Result<Fsync> {
    let path = dir.join("fsync-probe");
    tokio::task::spawn_blocking(move || {
        let r = probe(&path);
        let _ = std::fs::remove_file(&path);
        r
    })
    .await?
}

fn probe(path: &Path) -> Result<Fsync> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let page = [0x5au8; 4096];
    // Allocate the blocks first, as a WAL that is reused after a checkpoint has them.
    for _ in 0..16 {
        f.write_all(&page)?;
    }
    f.sync_all()?;
    let started = Instant::now();
    let mut took = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        if started.elapsed() > BUDGET {
            break;
        }
        let t = Instant::now();
        f.seek(SeekFrom::Start((i % 16) as u64 * 4096))?;
        f.write_all(&page)?;
        f.sync_data()?;
        took.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(summarise(took))
}

fn summarise(mut took: Vec<f64>) -> Fsync {
    took.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if took.is_empty() {
            0.0
        } else {
            took[((took.len() - 1) as f64 * q).round() as usize]
        }
    };
    Fsync {
        rounds: took.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

/// Bytes of the regular files directly in `dir` (the database, its WAL and shared memory).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Where the kernel's DAMON sysfs interface lives.
pub const DAMON_ADMIN: &str = "/sys/kernel/mm/damon/admin/kdamonds";

/// Whether the kernel runs a DAMON scheme that pages out memory left idle (some VMs do;
/// when its filters admit file-backed pages, database pages leave the page cache a while
/// after their last use and reads of a large database go to the disk). Described as
/// "kdamond N: pageout of memory idle for S s or more", or None when no such scheme runs.
/// `root` is [`DAMON_ADMIN`] outside tests.
pub fn page_cache_pageout(root: &Path) -> Option<String> {
    let mut found = Vec::new();
    for k in std::fs::read_dir(root).ok()?.flatten() {
        let read = |p: &Path| std::fs::read_to_string(p).map(|s| s.trim().to_owned());
        if read(&k.path().join("state")).ok().as_deref() != Some("on") {
            continue;
        }
        let Ok(contexts) = std::fs::read_dir(k.path().join("contexts")) else {
            continue;
        };
        for c in contexts.flatten() {
            let aggr_us: u64 = read(&c.path().join("monitoring_attrs/intervals/aggr_us"))
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let Ok(schemes) = std::fs::read_dir(c.path().join("schemes")) else {
                continue;
            };
            for sc in schemes.flatten() {
                let Ok(action) = read(&sc.path().join("action")) else {
                    continue;
                };
                if action != "pageout" {
                    continue;
                }
                let min_age: u64 = read(&sc.path().join("access_pattern/age/min"))
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                found.push(format!(
                    "kdamond {}: pageout of memory idle for {:.0} s or more",
                    k.file_name().to_string_lossy(),
                    min_age.saturating_mul(aggr_us) as f64 / 1e6
                ));
            }
        }
    }
    (!found.is_empty()).then(|| found.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_sorted_rounds() {
        let f = summarise((1..=100).rev().map(f64::from).collect());
        assert_eq!(f.rounds, 100);
        assert_eq!(f.p50_ms, 51.0);
        assert_eq!(f.p99_ms, 99.0);
        assert_eq!(f.per_second(), 1000.0 / 51.0);
        assert_eq!(summarise(Vec::new()).per_second(), 0.0);
    }

    #[test]
    fn dir_bytes_sums_the_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("b"), [0u8; 24]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(dir_bytes(dir.path()), 1024);
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
    }

    /// A sysfs tree as DAMON lays it out: kdamond 0 is on with a pageout scheme (age 12
    /// intervals of 5 s) beside a scheme of another action; kdamond 1 is off.
    #[test]
    fn a_running_pageout_scheme_is_found_with_its_idle_time() {
        let root = tempfile::tempdir().unwrap();
        let put = |rel: &str, v: &str| {
            let p = root.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, format!("{v}\n")).unwrap();
        };
        assert_eq!(page_cache_pageout(root.path()), None);
        put("0/state", "on");
        put("0/contexts/0/monitoring_attrs/intervals/aggr_us", "5000000");
        put("0/contexts/0/schemes/0/action", "stat");
        put("0/contexts/0/schemes/0/access_pattern/age/min", "1");
        assert_eq!(page_cache_pageout(root.path()), None);
        put("0/contexts/0/schemes/1/action", "pageout");
        put("0/contexts/0/schemes/1/access_pattern/age/min", "12");
        put("1/state", "off");
        put("1/contexts/0/monitoring_attrs/intervals/aggr_us", "5000000");
        put("1/contexts/0/schemes/0/action", "pageout");
        assert_eq!(
            page_cache_pageout(root.path()).as_deref(),
            Some("kdamond 0: pageout of memory idle for 60 s or more")
        );
        assert_eq!(page_cache_pageout(&root.path().join("missing")), None);
    }

    #[tokio::test]
    async fn the_probe_syncs_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let f = measure(dir.path()).await.unwrap();
        assert!(f.rounds > 0 && f.p50_ms > 0.0 && f.p99_ms >= f.p50_ms);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
