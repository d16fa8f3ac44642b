//! The `cairn` binary: configuration, telemetry and the operator's subcommands.

mod cli;
mod listener;
mod mail;
mod serve;
mod tls;

/// mimalloc instead of glibc's malloc: a SCIM request is many small, short-lived
/// allocations (JSON parse, render, serialise) made on one thread and freed on another;
/// `perf` had glibc's malloc/free at about 13% of the server's samples on `GET` by
/// filter. Measured in BENCHMARKS.md ("What the benchmark found").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = cli::settings::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
