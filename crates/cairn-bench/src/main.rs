//! `cairn-bench`: Cairn's benchmark suite. For each user count it starts the real `cairn`
//! binary on a fresh database, seeds users over SCIM, measures each SCIM operation with wrk
//! over loopback against a floor (a trivial handler behind the same middleware), and
//! writes a table, JSON and an SVG chart. `scripts/bench` is the documented entry point.

mod callgrind;
mod dashboard;
mod disk;
mod report;
mod seed;
mod server;
mod wrk;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use std::path::PathBuf;
use wrk::{Load, Measured};

#[derive(Parser, Debug)]
#[command(
    name = "cairn-bench",
    about = "Benchmark Cairn's SCIM API against a bare-handler floor"
)]
struct Args {
    /// User counts to run, comma-separated (each on a fresh database), e.g. 1000,10000,100000.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    users: Vec<usize>,
    /// Seconds of load per operation.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Smoke test: 1,000 users, 2 s per operation, few connections. Asserts no timings,
    /// only that every operation ran and no request failed.
    #[arg(long)]
    short: bool,
    /// Run on PostgreSQL (a database created and dropped on 127.0.0.1:5432, user postgres).
    #[arg(long)]
    postgres: bool,
    /// Run SQLite and then PostgreSQL for each user count.
    #[arg(long, conflicts_with = "postgres")]
    both: bool,
    /// The cairn binary to measure.
    #[arg(long, env = "CAIRN_BENCH_BIN", default_value = "target/release/cairn")]
    bin: PathBuf,
    /// wrk connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Concurrent clients while seeding.
    #[arg(long, default_value_t = 16)]
    seed_concurrency: usize,
    /// Largest group measured against a one-member group.
    #[arg(long, default_value_t = 100_000)]
    group_size: usize,
    /// Skip the group operations.
    #[arg(long)]
    no_groups: bool,
    /// Only these operations (comma-separated names from the table); the floor always runs.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Measure the floor once per user count instead of right before every operation.
    /// Pairing (the default) puts each ratio against a floor taken seconds earlier, so a
    /// host whose speed drifts during a run moves both sides of the ratio together.
    #[arg(long)]
    single_floor: bool,
    /// Count instructions per request under valgrind's callgrind instead of measuring
    /// throughput with wrk (SQLite only): repeatable on a host whose speed drifts. The
    /// dumps, one per operation, are written beside the JSON for `callgrind_annotate`.
    #[arg(long, conflicts_with_all = ["postgres", "both"])]
    callgrind: bool,
    /// Requests per operation counted under callgrind (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 500)]
    callgrind_requests: usize,
    /// Where the JSON goes; the chart is written beside it as .svg.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
}

/// One backend at one user count.
pub struct Run {
    pub backend: &'static str,
    pub users: usize,
    pub seed_secs: f64,
    pub group_size: Option<usize>,
    pub rss_peak_kib: u64,
    pub rss_after_seed_kib: u64,
    /// Bytes in the SQLite data dir (database and WAL) after seeding; None on PostgreSQL.
    pub db_bytes_after_seed: Option<u64>,
    /// The data directory's durable-write speed, measured before seeding.
    pub disk: disk::Fsync,
    pub ops: Vec<Op>,
}

/// One measured operation.
pub struct Op {
    pub name: String,
    pub label: String,
    pub m: Measured,
    /// The floor measured right before this operation, when floors are paired.
    pub paired_floor: Option<f64>,
}

impl Run {
    /// The floor measured first.
    pub fn floor_rps(&self) -> f64 {
        self.ops
            .iter()
            .find(|o| o.name == "floor")
            .map(|o| o.m.rps())
            .unwrap_or(0.0)
    }

    /// The floor an operation is compared with: its paired floor, else the first one.
    pub fn floor_for(&self, op: &Op) -> f64 {
        op.paired_floor.unwrap_or_else(|| self.floor_rps())
    }

    /// An operation's requests/s as a share of its floor's.
    pub fn ratio(&self, op: &Op) -> f64 {
        let floor = self.floor_for(op);
        if floor > 0.0 {
            op.m.rps() / floor
        } else {
            0.0
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.short {
        args.users = vec![1000];
        args.duration = 2;
        args.connections = args.connections.min(8);
        args.seed_concurrency = args.seed_concurrency.min(8);
        args.single_floor = true;
        // Under callgrind a debug build's page of 100 users takes seconds per request.
        args.callgrind_requests = args.callgrind_requests.min(5);
    }
    if !args.bin.exists() {
        bail!(
            "{} not found: build it first (scripts/bench does) or pass --bin",
            args.bin.display()
        );
    }
    let load = Load {
        threads: args.threads,
        connections: args.connections,
        secs: args.duration,
    };
    if args.callgrind {
        return run_callgrind(&args).await;
    }
    let backends: Vec<bool> = if args.both {
        vec![false, true]
    } else {
        vec![args.postgres]
    };
    let mut runs = Vec::new();
    let mut failed = Vec::new();
    for &n in &args.users {
        for &pg in &backends {
            let run = run_one(&args, &load, n, pg).await?;
            for op in &run.ops {
                let m = &op.m;
                // No operation expects an error answer (each request of a script is one
                // that must succeed), so one failed request fails the run.
                if m.requests == 0 || m.non_2xx + m.socket_errors > 0 {
                    failed.push(format!(
                        "{} {} users: {}: {} of {} requests failed",
                        run.backend,
                        n,
                        op.name,
                        m.non_2xx + m.socket_errors,
                        m.requests
                    ));
                }
            }
            report::print_table(&run);
            runs.push(run);
            // Write as we go: a long run that dies later keeps what it measured.
            report::write(&args.out, &runs, &load, &machine())?;
        }
    }
    println!("\nresults: {}", args.out.display());
    if let Some(svg) = report::chart_path(&args.out, &runs) {
        println!("chart:   {}", svg.display());
    }
    if !failed.is_empty() {
        for f in &failed {
            eprintln!("FAILED: {f}");
        }
        bail!("{} operation(s) had failed requests", failed.len());
    }
    Ok(())
}

/// A seeded deployment, its server running: what every mode measures against.
pub struct Prepared {
    pub dep: server::Deployment,
    pub server: server::Server,
    pub disk: disk::Fsync,
    pub token: String,
    pub tenant_id: String,
    /// The tenant's SCIM base path under the server's address.
    pub scim_path: String,
    pub seeded: seed::Seeded,
    /// (one-member group, big group) ids, when groups are measured.
    pub groups: Option<(String, String)>,
    pub big: usize,
    /// How many of the last seeded users stay out of the big group (the members added).
    pub pool_len: usize,
    pub rss_after_seed_kib: u64,
    pub db_bytes_after_seed: Option<u64>,
}

/// Fresh deployment, tenant and token, `n` users seeded over SCIM, and the two groups.
async fn prepare(args: &Args, n: usize, postgres: bool) -> Result<Prepared> {
    let dep = server::Deployment::new(&args.bin, postgres).await?;
    let disk = disk::measure(dep.data_dir.path()).await?;
    println!(
        "disk: write + fdatasync p50 {:.2} ms, p99 {:.2} ms ({:.0}/s, {} rounds)",
        disk.p50_ms,
        disk.p99_ms,
        disk.per_second(),
        disk.rounds
    );
    let server = dep.serve().await?;
    let base = server.base.clone();
    let tenant = dep
        .cli(&["tenant", "create", "--name", "Bench", "--json"], &base)
        .await?;
    let tenant_id = tenant["id"].as_str().context("tenant id")?.to_owned();
    dep.cli(
        &[
            "scim",
            "enable",
            "--tenant",
            &tenant_id,
            "--account-size-gb",
            "50",
        ],
        &base,
    )
    .await?;
    let tok = dep
        .cli(&["scim", "token", "--tenant", &tenant_id, "--json"], &base)
        .await?;
    let token = tok["token"].as_str().context("token")?.to_owned();
    let scim_url = tok["tenant_url"]
        .as_str()
        .or(tenant["tenant_url"].as_str())
        .context("tenant_url")?
        .trim_end_matches('/')
        .to_owned();
    let scim_path = scim_url
        .strip_prefix(&base)
        .context("tenant_url is not under the server's address")?
        .to_owned();

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.seed_concurrency)
        .build()?;
    let seeded = seed::users(&client, &scim_url, &token, n, args.seed_concurrency).await?;
    println!(
        "seeded {n} users in {:.1} s: {:.0} users/s ({} clients)",
        seeded.secs,
        n as f64 / seeded.secs,
        args.seed_concurrency
    );

    // Groups: a one-member group and a big one; the users left out of the big group
    // are the members the benchmark adds (and removes again).
    let pool_len = (n / 10).clamp(1, 1000);
    let big = args.group_size.min(n - pool_len);
    let want_groups = !args.no_groups
        && ["group_add_1", "group_add_big", "get_groups"]
            .iter()
            .any(|op| wanted(args, op));
    let groups = if want_groups {
        let started = std::time::Instant::now();
        let small =
            seed::group(&client, &scim_url, &token, "bench-small", &seeded.ids[..1]).await?;
        let large = seed::group(
            &client,
            &scim_url,
            &token,
            "bench-large",
            &seeded.ids[..big],
        )
        .await?;
        println!(
            "groups: 1 and {big} members in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Some((small, large))
    } else {
        None
    };
    let (_, rss_after_seed_kib) = server.memory_kib();
    let db_bytes_after_seed = (!postgres).then(|| disk::dir_bytes(dep.data_dir.path()));
    Ok(Prepared {
        dep,
        server,
        disk,
        token,
        tenant_id,
        scim_path,
        seeded,
        groups,
        big,
        pool_len,
        rss_after_seed_kib,
        db_bytes_after_seed,
    })
}

async fn run_one(args: &Args, load: &Load, n: usize, postgres: bool) -> Result<Run> {
    let backend = if postgres { "postgres" } else { "sqlite" };
    println!("\n## {backend}, {n} users");
    let Prepared {
        dep,
        server,
        disk,
        token,
        tenant_id,
        scim_path,
        seeded,
        groups,
        big,
        pool_len,
        rss_after_seed_kib,
        db_bytes_after_seed,
        ..
    } = prepare(args, n, postgres).await?;
    let base = server.base.clone();
    let session = dashboard::session(&dep, &base, &tenant_id).await?;
    // A name search matching about a hundred accounts (u{k}, u{k}0-9, u{k}00-99).
    let search = format!("u{}", n / 1000 + 1);

    let dir = tempfile::Builder::new()
        .prefix("cairn-bench-lua-")
        .tempdir()?;
    let scripts = wrk::Scripts::new(dir.path(), &token, &scim_path);
    // A sample of seeded users spread over the whole range, for the by-id operations.
    let step = (n / 10_000).max(1);
    let sample: Vec<String> = (0..n)
        .step_by(step)
        .map(|i| format!("{} {i}", seeded.ids[i]))
        .collect();
    let sample = scripts.write_lines("sample.txt", &sample)?;
    let pool: Vec<String> = (n - pool_len..n)
        .map(|i| format!("{} {i}", seeded.ids[i]))
        .collect();
    let pool = scripts.write_lines("pool.txt", &pool)?;
    let run_id = format!("{}{}", std::process::id(), n);
    let deep = n.saturating_sub(99).max(1);

    let mut plan: Vec<(&str, String, String)> = vec![
        (
            "floor",
            "GET /_bench/floor".into(),
            wrk::get_fixed("/_bench/floor"),
        ),
        (
            "get_filter",
            "GET /Users?filter=userName eq".into(),
            wrk::get_filter(n),
        ),
        ("get_id", "GET /Users/{id}".into(), wrk::get_id(&sample)),
        (
            "page_first",
            "GET /Users?startIndex=1&count=100".into(),
            wrk::get_fixed(&format!("{scim_path}/Users?startIndex=1&count=100")),
        ),
        (
            "page_deep",
            format!("GET /Users?startIndex={deep}&count=100"),
            wrk::get_fixed(&format!("{scim_path}/Users?startIndex={deep}&count=100")),
        ),
        (
            "cursor_first",
            "GET /Users?cursor=&count=100".into(),
            wrk::get_fixed(&format!("{scim_path}/Users?cursor=&count=100")),
        ),
        (
            "cursor_deep",
            format!("GET /Users?cursor=(after user {})&count=100", deep - 1),
            wrk::get_fixed(&format!(
                "{scim_path}/Users?cursor={}&count=100",
                if wanted(args, "cursor_deep") {
                    deep_cursor(&base, &scim_path, &token, deep - 1).await?
                } else {
                    String::new()
                }
            )),
        ),
        (
            "get_groups",
            "GET /Groups (Okta SPEC test step 10)".into(),
            wrk::get_fixed(&format!("{scim_path}/Groups")),
        ),
        (
            "dashboard_accounts",
            "dashboard GET /accounts (first page)".into(),
            wrk::get_dashboard("/accounts", &session),
        ),
        (
            "dashboard_search",
            format!("dashboard GET /accounts?q={search}"),
            wrk::get_dashboard(&format!("/accounts?q={search}"), &session),
        ),
        // The provisioning inspector's first page, and a filter nothing matches: the
        // second decodes the tenant's whole window of the log (every seeding request
        // was recorded, up to the 10,000 entries a tenant keeps by default).
        (
            "dashboard_requests",
            "dashboard GET /requests (inspector, first page)".into(),
            wrk::get_dashboard("/requests", &session),
        ),
        (
            "dashboard_requests_miss",
            "dashboard GET /requests?status=418 (no match: whole log decoded)".into(),
            wrk::get_dashboard("/requests?status=418", &session),
        ),
        (
            "put_okta",
            "PUT /Users/{id} (Okta profile)".into(),
            wrk::put_user(&sample),
        ),
        (
            "patch_entra",
            "PATCH /Users/{id} active False (Entra)".into(),
            wrk::patch_disable(&sample),
        ),
    ];
    if let Some((small, large)) = &groups {
        plan.push((
            "group_add_1",
            "PATCH /Groups add+remove member, size 1".into(),
            wrk::group_add_member(small, &pool),
        ));
        plan.push((
            "group_add_big",
            format!("PATCH /Groups add+remove member, size {big}"),
            wrk::group_add_member(large, &pool),
        ));
    }
    // Last: it adds users, which would change N for the operations after it.
    plan.push(("post", "POST /Users".into(), wrk::post_user(&run_id)));

    let mut ops: Vec<Op> = Vec::new();
    let mut floor_script: Option<PathBuf> = None;
    // Paired floors: each operation is compared with the floor run just before it. The
    // first operation pairs with the floor row itself; later ones run a floor of their own.
    let mut fresh_floor: Option<f64> = None;
    for (name, label, lua) in plan {
        if name != "floor" && !wanted(args, name) {
            continue;
        }
        let paired_floor = if name == "floor" || args.single_floor {
            None
        } else if let Some(f) = fresh_floor.take() {
            Some(f)
        } else {
            let script = floor_script.as_deref().context("the floor runs first")?;
            let f = wrk::run(&base, script, load).await?;
            println!("  {:<14} {:>9.0} req/s", "(floor)", f.rps());
            Some(f.rps())
        };
        let script = scripts.write(name, &lua)?;
        let m = wrk::run(&base, &script, load).await?;
        if name == "floor" {
            fresh_floor = Some(m.rps());
            floor_script = Some(script);
        }
        println!(
            "  {name:<14} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  failed {}",
            m.rps(),
            m.p50_ms,
            m.p99_ms,
            m.non_2xx + m.socket_errors
        );
        ops.push(Op {
            name: name.to_owned(),
            label,
            m,
            paired_floor,
        });
    }
    // RFC 9865 cursors: a deep page should cost what the first does. Each throughput is
    // also taken against its paired floor, so a host whose speed drifts between the two
    // runs does not move the ratio.
    let rps = |name: &str| {
        ops.iter()
            .find(|o| o.name == name)
            .map(|o| (o.m.rps(), o.m.rps() / o.paired_floor.unwrap_or(1.0)))
    };
    let ratio = |first: &str, deep: &str| match (rps(first), rps(deep)) {
        (Some(f), Some(d)) => format!("{:.2} ({:.2} against paired floors)", d.0 / f.0, d.1 / f.1),
        _ => "not measured".into(),
    };
    if rps("cursor_deep").is_some() {
        println!(
            "  deep / first page throughput: cursor {}; index {}",
            ratio("cursor_first", "cursor_deep"),
            ratio("page_first", "page_deep")
        );
    }
    dashboard::signed_in(&base, &session).await?;
    let (rss_peak_kib, _) = server.memory_kib();
    server.stop().await;
    drop(dep);
    Ok(Run {
        backend,
        users: n,
        seed_secs: seeded.secs,
        group_size: groups.map(|_| big),
        rss_peak_kib,
        rss_after_seed_kib,
        db_bytes_after_seed,
        disk,
        ops,
    })
}

/// `--callgrind`: seed at full speed, restart the server under callgrind on the same data,
/// count each operation's instructions per request.
async fn run_callgrind(args: &Args) -> Result<()> {
    let out_dir = args
        .out
        .parent()
        .map(|p| p.join("callgrind"))
        .unwrap_or_else(|| PathBuf::from("callgrind"));
    std::fs::create_dir_all(&out_dir)?;
    let mut results = Vec::new();
    for &n in &args.users {
        println!("\n## callgrind, sqlite, {n} users");
        let p = prepare(args, n, false).await?;
        p.server.stop().await;
        let server = p.dep.serve_under(&callgrind::wrapper(&out_dir)).await?;
        let base = server.base.clone();
        let pool = &p.seeded.ids[n - p.pool_len..];
        let reqs = callgrind::Requests {
            // The restarted server listens on a new port.
            scim: &format!("{base}{}", p.scim_path),
            floor_url: format!("{base}/_bench/floor"),
            ids: &p.seeded.ids,
            n,
            groups: p.groups.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
            pool,
            run: format!("{}{n}", std::process::id()),
        };
        let target = callgrind::Target {
            pid: server.pid,
            out_dir: &out_dir,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?,
            token: &p.token,
        };
        callgrind::control(&["-i", "on"], server.pid).await?;
        let mut counted = Vec::new();
        for op in reqs.ops() {
            if op != "floor" && !wanted(args, op) {
                continue;
            }
            let warmup = (args.callgrind_requests / 10).max(1);
            let c = target
                .count(&reqs, op, warmup, args.callgrind_requests)
                .await?;
            println!(
                "  {op:<14} {:>12.0} instructions/request ({:.1} s, {} failed)",
                c.per_request(),
                c.wall_secs,
                c.failed
            );
            counted.push(c);
        }
        server.stop().await;
        callgrind::print(n, &counted);
        if let Some(c) = counted.iter().find(|c| c.failed > 0) {
            bail!("{}: {} of {} requests failed", c.op, c.failed, c.requests);
        }
        results.push(callgrind::to_json(n, &counted));
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&json!({ "callgrind": results, "machine": machine() }))?,
    )?;
    println!(
        "\nresults: {}\ndumps:   {}",
        args.out.display(),
        out_dir.display()
    );
    Ok(())
}

/// The cursor of the page after the first `skip` users (in the cursor order: by id), found
/// by walking cursor pages of up to 1,000 users; the cursor itself is opaque.
async fn deep_cursor(base: &str, scim_path: &str, token: &str, skip: usize) -> Result<String> {
    let client = reqwest::Client::new();
    let (mut cursor, mut seen) = (String::new(), 0usize);
    while seen < skip {
        let count = (skip - seen).min(1000);
        let page: serde_json::Value = client
            .get(format!(
                "{base}{scim_path}/Users?cursor={cursor}&count={count}&attributes=id"
            ))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let got = page["Resources"].as_array().map_or(0, Vec::len);
        cursor = page["nextCursor"]
            .as_str()
            .context("the list ended before the deep page")?
            .to_owned();
        seen += got;
    }
    Ok(cursor)
}

fn wanted(args: &Args, name: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|o| o == name)
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    json!({
        "page_cache_pageout": disk::page_cache_pageout(std::path::Path::new(disk::DAMON_ADMIN)),
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "mem_gib": wrk::round(mem_kib as f64 / 1048576.0, 1),
    })
}
