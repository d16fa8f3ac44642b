//! `cairn man --dir D` (hidden): writes the manual pages, one per command (`cairn.1`,
//! `cairn-serve.1`, `cairn-tenant-create.1`, …), from the clap definitions, so the pages
//! the .deb ships say what `--help` says (packaging/README.md).

use crate::cli::{Cli, ManArgs};
use anyhow::{Context, Result};
use clap::CommandFactory;

pub fn run(args: &ManArgs) -> Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    clap_mangen::generate_to(Cli::command(), &args.dir)
        .with_context(|| format!("writing manual pages into {}", args.dir.display()))?;
    Ok(())
}
