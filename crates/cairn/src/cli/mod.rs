//! Command-line interface. Scripts rely on these exact forms and on the JSON they print.
//!
//! - `args`: the clap definitions (global options, subcommands, flags);
//! - `config`: global options → database, store, services, backup vault;
//! - `commands/`: one module per subcommand group, one function per command
//!   (`cairn serve` itself is `crate::serve`).

use anyhow::Result;
use cairn_core::audit::RequestMeta;
use cairn_core::auth::OperatorCtx;
use cairn_core::service::Services;
use std::sync::Arc;

/// `println!` for command output. A closed standard output (`cairn audit --json | head`)
/// becomes an error ("writing to standard output: Broken pipe") and a non-zero exit
/// instead of a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).context("writing to standard output")?
    }};
}

/// Prints a JSON document (pretty) as command output.
macro_rules! print_json {
    ($v:expr $(,)?) => {
        outln!("{}", serde_json::to_string_pretty($v).unwrap_or_default())
    };
}

mod args;
mod commands;
mod config;
mod healthcheck;
mod help;
pub mod settings;
pub mod test_knobs;

pub use args::*;
pub use commands::account::purge_expired;
pub use config::{database, read_only_reason, services, services_with, Database};

/// What every command but `serve` and `db …` works with: the services over the
/// configured store, acting as the local operator.
pub(crate) struct Ctx {
    pub g: Global,
    pub op: OperatorCtx,
    pub svc: Arc<Services>,
    pub meta: RequestMeta,
}

pub async fn run(mut cli: Cli) -> Result<()> {
    test_knobs::enforce(&mut cli);
    let g = cli.global;
    let cmd = match cli.command {
        Command::Serve(args) => return crate::serve::serve(&g, *args).await,
        Command::Db(cmd) => return commands::db::run(&g, cmd).await,
        Command::Healthcheck(args) => return healthcheck::run(args).await,
        Command::Completions { shell } => return commands::settings::completions(shell),
        Command::Config(cmd) => return commands::settings::run(&cli.sources, cmd),
        Command::Man(args) => return commands::man::run(&args),
        cmd => cmd,
    };
    let svc = services(&g, config::public_url_for_cli(&g)).await?;
    let cx = Ctx {
        g,
        op: OperatorCtx::local_operator(),
        svc,
        meta: RequestMeta {
            user_agent: Some(format!("cairn-cli/{}", env!("CARGO_PKG_VERSION"))),
            request_id: None,
        },
    };
    match cmd {
        Command::Serve(_)
        | Command::Db(_)
        | Command::Healthcheck(_)
        | Command::Completions { .. }
        | Command::Config(_)
        | Command::Man(_) => {
            unreachable!("handled above")
        }
        Command::Tenant(c) => commands::tenant::run(&cx, c).await,
        Command::Scim(c) => commands::scim::run(&cx, c).await,
        Command::Sso(c) => commands::sso::run(&cx, c).await,
        Command::User(c) => commands::user::run(&cx, c).await,
        Command::Audit(a) => commands::audit::run(&cx, a).await,
        Command::Requests(a) => commands::requests::run(&cx, a).await,
        Command::Account(c) => commands::account::run(&cx, c).await,
        Command::Group(c) => commands::group::run(&cx, c).await,
        Command::Accounts(a) => commands::freshness::list(&cx, a).await,
        Command::Vault(c) => commands::vault::run(&cx, c).await,
    }
}
