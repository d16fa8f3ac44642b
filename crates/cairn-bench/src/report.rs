//! Results: the table printed after each run, the JSON file, and the hand-written SVG chart
//! of throughput against user count.

use crate::wrk::{round, Load};
use crate::Run;
use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A Markdown table (readable in a terminal, pasteable into BENCHMARKS.md).
pub fn print_table(run: &Run) {
    println!(
        "\n{} · {} users · seeded at {:.0} users/s · peak RSS {:.1} MiB{}{} · disk fdatasync p50 {:.2} ms\n",
        run.backend,
        run.users,
        run.users as f64 / run.seed_secs,
        run.rss_peak_kib as f64 / 1024.0,
        run.db_bytes_after_seed
            .map(|b| format!(" · data dir (database and WAL) {:.0} MiB after seeding", b as f64 / 1048576.0))
            .unwrap_or_default(),
        run.group_size
            .map(|g| format!(" · big group {g} members"))
            .unwrap_or_default(),
        run.disk.p50_ms
    );
    println!("| operation | req/s | p50 ms | p99 ms | floor req/s | × floor | failed |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for op in &run.ops {
        let m = &op.m;
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {} |",
            op.label.replace('|', "\\|"),
            m.rps(),
            m.p50_ms,
            m.p99_ms,
            run.floor_for(op),
            run.ratio(op),
            m.non_2xx + m.socket_errors
        );
    }
}

pub fn write(out: &Path, runs: &[Run], load: &Load, machine: &Value) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let runs_json: Vec<Value> = runs
        .iter()
        .map(|r| {
            let mut ops = Map::new();
            for op in &r.ops {
                let mut v = op.m.to_json();
                v["label"] = json!(op.label);
                v["floor_rps"] = json!(round(r.floor_for(op), 1));
                v["ratio_to_floor"] = json!(round(r.ratio(op), 3));
                ops.insert(op.name.clone(), v);
            }
            json!({
                "backend": r.backend,
                "users": r.users,
                "seed_seconds": round(r.seed_secs, 2),
                "seed_users_per_second": round(r.users as f64 / r.seed_secs, 0),
                "big_group_members": r.group_size,
                "rss_peak_mib": round(r.rss_peak_kib as f64 / 1024.0, 1),
                "rss_after_seed_mib": round(r.rss_after_seed_kib as f64 / 1024.0, 1),
                "disk": r.disk.to_json(),
                "db_mib_after_seed": r.db_bytes_after_seed.map(|b| round(b as f64 / 1048576.0, 1)),
                "ops": ops,
            })
        })
        .collect();
    let doc = json!({
        "machine": machine,
        "load": {
            "generator": "wrk",
            "threads": load.threads,
            "connections": load.connections,
            "seconds_per_operation": load.secs,
            "floor": if runs.iter().flat_map(|r| &r.ops).any(|o| o.paired_floor.is_some()) { "paired: measured right before each operation" } else { "single: measured once per run" },
        },
        "runs": runs_json,
    });
    std::fs::write(out, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    if let Some(svg) = chart_path(out, runs) {
        std::fs::write(&svg, chart(runs)).with_context(|| format!("writing {}", svg.display()))?;
    }
    Ok(())
}

/// The chart's path, when some backend ran at two user counts or more.
pub fn chart_path(out: &Path, runs: &[Run]) -> Option<PathBuf> {
    let multi = ["sqlite", "postgres"].iter().any(|b| {
        let mut ns: Vec<usize> = runs
            .iter()
            .filter(|r| r.backend == *b)
            .map(|r| r.users)
            .collect();
        ns.dedup();
        ns.len() >= 2
    });
    multi.then(|| out.with_extension("svg"))
}

const SERIES: [(&str, &str); 8] = [
    ("floor", "#888888"),
    ("get_filter", "#1f77b4"),
    ("get_id", "#17becf"),
    ("post", "#d62728"),
    ("put_okta", "#ff7f0e"),
    ("patch_entra", "#9467bd"),
    ("page_first", "#2ca02c"),
    ("page_deep", "#8c564b"),
];

/// Requests/s against user count (log scale), one line per operation and backend
/// (SQLite solid, PostgreSQL dashed).
fn chart(runs: &[Run]) -> String {
    let (w, h) = (820.0, 460.0);
    let (left, right, top, bottom) = (70.0, 190.0, 30.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let rps = |r: &Run, op: &str| r.ops.iter().find(|o| o.name == op).map(|o| o.m.rps());
    let ymax = runs
        .iter()
        .flat_map(|r| r.ops.iter().map(|o| o.m.rps()))
        .fold(1.0f64, f64::max);
    let ymax = nice_ceiling(ymax);
    let nmin = runs.iter().map(|r| r.users).min().unwrap_or(1).max(1) as f64;
    let nmax = runs.iter().map(|r| r.users).max().unwrap_or(10).max(10) as f64;
    let (lmin, lmax) = (
        nmin.log10().floor(),
        nmax.log10().ceil().max(nmin.log10().floor() + 1.0),
    );
    let x = |n: usize| left + ((n as f64).log10() - lmin) / (lmax - lmin) * pw;
    let y = |v: f64| top + ph - v / ymax * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="18" font-size="14" font-weight="bold">Cairn: requests/s against users in the tenant</text>"#
    );
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{:.0}</text>"##,
            left + pw,
            left - 6.0,
            yy + 4.0,
            v
        );
    }
    let mut e = lmin as i32;
    while e as f64 <= lmax {
        let n = 10f64.powi(e) as usize;
        let xx = x(n);
        let label = match n {
            n if n >= 1_000_000 => format!("{}M", n / 1_000_000),
            n if n >= 1_000 => format!("{}k", n / 1_000),
            n => n.to_string(),
        };
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#e0e0e0"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            top + ph,
            top + ph + 18.0
        );
        e += 1;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">users (log scale)</text>"#,
        left + pw / 2.0,
        h - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">requests/s</text>"#,
        top + ph / 2.0
    );
    let mut legend_y = top + 10.0;
    for backend in ["sqlite", "postgres"] {
        let mut these: Vec<&Run> = runs.iter().filter(|r| r.backend == backend).collect();
        these.sort_by_key(|r| r.users);
        if these.is_empty() {
            continue;
        }
        let dash = if backend == "postgres" {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        for (op, color) in SERIES {
            let pts: Vec<(f64, f64)> = these
                .iter()
                .filter_map(|r| rps(r, op).map(|v| (x(r.users), y(v))))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let path: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
                path.join(" ")
            );
            for (a, b) in &pts {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{color}"/>"#
                );
            }
            let lx = left + pw + 14.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{op} ({backend})</text>"#,
                lx + 24.0,
                lx + 30.0,
                legend_y + 4.0
            );
            legend_y += 17.0;
        }
    }
    s.push_str("</svg>\n");
    s
}

fn nice_ceiling(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}
