//! `cairn completions SHELL` and `cairn config show`.

use crate::cli::settings::Sources;
use crate::cli::ConfigCmd;
use anyhow::{Context, Result};
use serde_json::json;

/// Writes the completion script for `shell` to standard output.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = crate::cli::settings::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "cairn", &mut out);
    use std::io::Write as _;
    std::io::stdout()
        .write_all(&out)
        .context("writing to standard output")
}

pub fn run(sources: &Sources, cmd: ConfigCmd) -> Result<()> {
    match cmd {
        ConfigCmd::Show { json, .. } => show(sources, json),
    }
}

fn show(sources: &Sources, json: bool) -> Result<()> {
    let file = sources.file.as_ref().map(|p| p.display().to_string());
    if json {
        print_json!(&json!({"config_file": file, "settings": sources.by_key}));
        return Ok(());
    }
    outln!("# config file: {}", file.as_deref().unwrap_or("(none)"));
    for (key, s) in &sources.by_key {
        match &s.value {
            // TOML: keys as in the file, values as strings (what the flags take).
            Some(v) => outln!(
                "{key} = {}  # {}",
                serde_json::to_string(v).unwrap_or_default(),
                s.source.as_str()
            ),
            None => outln!("# {key} (unset)"),
        }
    }
    Ok(())
}
