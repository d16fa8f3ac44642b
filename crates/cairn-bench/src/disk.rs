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

    #[tokio::test]
    async fn the_probe_syncs_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let f = measure(dir.path()).await.unwrap();
        assert!(f.rounds > 0 && f.p50_ms > 0.0 && f.p99_ms >= f.p50_ms);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
