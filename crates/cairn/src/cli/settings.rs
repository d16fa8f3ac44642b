//! Where each setting comes from: a flag, then its `CAIRN_*` variable (or `CAIRN_*_FILE`,
//! the variable's value read from a file), then the TOML file of `--config` /
//! `CAIRN_CONFIG`, then the default.
//!
//! This works on clap's own description of the command line, not on a list kept here: a
//! setting is any option of the top-level command (the global options) or of `serve`,
//! named in the file by its long flag without the dashes (`database-url`, or
//! `database_url`). A flag added to either one is a setting of the file without a change
//! here. The command line is parsed once to learn what the flags and variables gave, and
//! if the file or a `*_FILE` variable fills anything else, once more with those values
//! appended as flags (only in memory: they do not show in the process's command line).
//!
//! Settings that are no clap option but environment read by libraries — `CAIRN_LOG` and
//! the S3 store's `AWS_*` — can be set in the file too (`log`, `aws-region`, …), and
//! their secrets as `AWS_*_FILE`; these become the process's environment before anything
//! else runs, unless the variable is already set.

use super::args::Cli;
use anyhow::{anyhow, bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Settings that are environment variables read outside clap, by their file key.
const ENV_ONLY: &[(&str, &str)] = &[
    ("log", "CAIRN_LOG"),
    ("aws-access-key-id", "AWS_ACCESS_KEY_ID"),
    ("aws-secret-access-key", "AWS_SECRET_ACCESS_KEY"),
    ("aws-session-token", "AWS_SESSION_TOKEN"),
    ("aws-region", "AWS_REGION"),
    ("aws-endpoint", "AWS_ENDPOINT"),
    ("aws-allow-http", "AWS_ALLOW_HTTP"),
];

/// Options of the command line that are not settings of the file.
const NOT_SETTINGS: &[&str] = &["help", "version", "config"];

/// The settings of this run, by file key, with where each came from (`cairn config show`).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub by_key: BTreeMap<String, Setting>,
    /// The TOML file read, if any.
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Setting {
    pub source: Source,
    /// The value as given (secrets redacted); `None` when unset.
    pub value: Option<String>,
}

/// The value of a setting as `cairn config show` prints it: never a secret.
fn shown(key: &str, value: &str) -> String {
    // A `…-file` setting names a file, which is no secret itself.
    let secret = !key.ends_with("-file")
        && ["secret", "token", "password", "access-key-id"]
            .iter()
            .any(|s| key.contains(s));
    if secret {
        return "<redacted>".to_owned();
    }
    // A password in a database URL: scheme://user:PASSWORD@host…
    if let Some((scheme, rest)) = value.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:<redacted>@{host}");
            }
        }
    }
    value.to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Flag,
    Env,
    EnvFile,
    File,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::EnvFile => "env-file",
            Source::File => "file",
            Source::Default => "default",
        }
    }
}

/// A failure to make sense of the command line and its settings: clap's own errors
/// (including `--help` and `--version`) print and exit as clap does.
pub enum ParseError {
    Clap(clap::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for ParseError {
    fn from(e: anyhow::Error) -> Self {
        ParseError::Other(e)
    }
}

/// The command line as clap knows it, with help texts and examples filled in.
pub fn command() -> Command {
    super::help::document(Cli::command())
}

/// The command line of this process, with the settings file and `*_FILE` variables
/// applied; prints the problem and exits on an error.
pub fn parse() -> Cli {
    match parse_from(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(ParseError::Clap(e)) => e.exit(),
        Err(ParseError::Other(e)) => {
            eprintln!("error: {e:#}");
            std::process::exit(2)
        }
    }
}

fn env_nonempty(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// A secret read from a file: its content without the final line break.
fn read_secret(var: &str, path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{var}: cannot read {}", path.display()))?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    Ok(text.to_owned())
}

/// The file key of an option: its long flag.
fn key_of(arg: &clap::Arg) -> Option<&str> {
    arg.get_long()
        .filter(|_| !NOT_SETTINGS.contains(&arg.get_id().as_str()))
}

/// Every setting the file may name: the top-level options and `serve`'s.
fn setting_keys(cmd: &Command) -> Vec<String> {
    let serve = cmd.find_subcommand("serve");
    cmd.get_arguments()
        .chain(serve.into_iter().flat_map(|s| s.get_arguments()))
        .filter_map(key_of)
        .map(str::to_owned)
        .chain(ENV_ONLY.iter().map(|(k, _)| (*k).to_owned()))
        .collect()
}

/// The settings file as key → value, keys as long flags (`_` read as `-`).
fn read_file(path: &Path, known: &[String]) -> Result<BTreeMap<String, toml::Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {}", path.display()))?;
    let mut out = BTreeMap::new();
    for (k, v) in table {
        let key = k.replace('_', "-");
        if matches!(v, toml::Value::Table(_)) {
            bail!(
                "config file {}: `{k}` is a table; settings are plain keys at the top",
                path.display()
            );
        }
        if !known.contains(&key) {
            bail!(
                "config file {}: unknown setting `{k}` (settings are the long options of \
                 `cairn --help` and `cairn serve --help` without the dashes, and `log`, \
                 `aws-*`)",
                path.display()
            );
        }
        if out.insert(key, v).is_some() {
            bail!("config file {}: `{k}` is set twice", path.display());
        }
    }
    Ok(out)
}

/// A value of the file as the text of a flag's value.
fn scalar(key: &str, v: &toml::Value) -> Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) | toml::Value::Table(_) => {
            bail!("config file: `{key}` must be a single value")
        }
    })
}

/// The flags that give an option the file's value.
fn flags_for(arg: &clap::Arg, key: &str, v: &toml::Value) -> Result<Vec<String>> {
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return match v {
            toml::Value::Boolean(true) => Ok(vec![format!("--{key}")]),
            toml::Value::Boolean(false) => Ok(Vec::new()),
            _ => bail!("config file: `{key}` is true or false"),
        };
    }
    match v {
        toml::Value::Array(items) => {
            let items = items
                .iter()
                .map(|i| scalar(key, i))
                .collect::<Result<Vec<_>>>()?;
            if matches!(arg.get_action(), ArgAction::Append) {
                Ok(items.iter().map(|i| format!("--{key}={i}")).collect())
            } else {
                // A list option written as one comma-separated value (`trusted-proxies`).
                Ok(vec![format!("--{key}={}", items.join(","))])
            }
        }
        v => Ok(vec![format!("--{key}={}", scalar(key, v)?)]),
    }
}

/// The settings in effect for this command line: the top-level options, with their
/// matches, and when the command is `serve` (or `config show`, which takes `serve`'s
/// options) those of the subcommand, with its matches. Other subcommands' options are
/// never filled from the file, even where a name is shared.
fn in_effect<'a>(cmd: &'a Command, m: &'a ArgMatches) -> Vec<(&'a clap::Arg, &'a ArgMatches)> {
    let mut out: Vec<_> = cmd.get_arguments().map(|a| (a, m)).collect();
    let (mut c, mut sm) = (cmd, m);
    let mut path = Vec::new();
    while let Some((name, sub_m)) = sm.subcommand() {
        match c.find_subcommand(name) {
            Some(sub) => {
                path.push(name);
                c = sub;
                sm = sub_m;
            }
            None => break,
        }
    }
    if matches!(path.as_slice(), ["serve"] | ["config", "show"]) {
        let serve_keys: Vec<_> = cmd
            .find_subcommand("serve")
            .into_iter()
            .flat_map(|s| s.get_arguments())
            .filter_map(key_of)
            .collect();
        out.extend(
            c.get_arguments()
                .filter(|a| {
                    !a.is_global_set() && key_of(a).is_some_and(|k| serve_keys.contains(&k))
                })
                .map(|a| (a, sm)),
        );
    }
    out
}

pub fn parse_from(argv: Vec<OsString>) -> Result<Cli, ParseError> {
    let cmd = command();
    let first = cmd
        .clone()
        .try_get_matches_from(&argv)
        .map_err(ParseError::Clap)?;
    let config = first.get_one::<PathBuf>("config").cloned();
    let file = match &config {
        Some(path) => read_file(path, &setting_keys(&cmd))?,
        None => BTreeMap::new(),
    };

    let mut sources = Sources {
        file: config,
        ..Sources::default()
    };
    // Environment read outside clap: from `*_FILE`, then the file, unless already set.
    for (key, var) in ENV_ONLY {
        let file_var = format!("{var}_FILE");
        let from_env_file = match env_nonempty(&file_var) {
            Some(_) if env_nonempty(var).is_some() => {
                return Err(anyhow!("set {var} or {file_var}, not both").into())
            }
            Some(path) => Some(read_secret(&file_var, Path::new(&path))?),
            None => None,
        };
        let (source, value) = match (from_env_file, file.get(*key)) {
            (Some(v), _) => (Source::EnvFile, v),
            (None, _) if env_nonempty(var).is_some() => (
                Source::Env,
                std::env::var(var).map_err(|e| anyhow!("{var}: {e}"))?,
            ),
            (None, Some(v)) => (Source::File, scalar(key, v)?),
            (None, None) => {
                sources.by_key.insert(
                    (*key).to_owned(),
                    Setting {
                        source: Source::Default,
                        value: None,
                    },
                );
                continue;
            }
        };
        if source != Source::Env {
            // Before any other thread exists (the runtime starts after parsing), so no
            // one reads the environment while it changes.
            std::env::set_var(var, &value);
        }
        sources.by_key.insert(
            (*key).to_owned(),
            Setting {
                source,
                value: Some(shown(key, &value)),
            },
        );
    }

    let mut extra: Vec<String> = Vec::new();
    let mut source_of = BTreeMap::new();
    for (arg, m) in in_effect(&cmd, &first) {
        let Some(key) = key_of(arg) else { continue };
        let id = arg.get_id().as_str();
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let file_var = env.as_ref().map(|e| format!("{e}_FILE"));
        let env_file = file_var.as_deref().and_then(env_nonempty);
        if let (Some(var), Some(fv), Some(_)) = (&env, &file_var, &env_file) {
            if env_nonempty(var).is_some() {
                return Err(anyhow!("set {var} or {fv}, not both").into());
            }
        }
        let source = match m.value_source(id) {
            Some(ValueSource::CommandLine) => Source::Flag,
            Some(ValueSource::EnvVariable) => Source::Env,
            _ => {
                if let (Some(fv), Some(path)) = (&file_var, &env_file) {
                    let value = read_secret(fv, Path::new(path))?;
                    extra.push(format!("--{key}={value}"));
                    Source::EnvFile
                } else if let Some(v) = file.get(key) {
                    extra.extend(flags_for(arg, key, v)?);
                    Source::File
                } else {
                    Source::Default
                }
            }
        };
        source_of.insert(key.to_owned(), source);
    }

    let matches = if extra.is_empty() {
        first
    } else {
        let mut argv = argv;
        argv.extend(extra.into_iter().map(OsString::from));
        cmd.clone().try_get_matches_from(argv).map_err(|e| {
            // The flags came from the file or a `*_FILE` variable: say so, as clap names
            // only the flag.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            ParseError::Other(anyhow!(
                "{} (a value from the config file or a *_FILE variable)",
                first.trim_start_matches("error: ")
            ))
        })?
    };
    for (arg, m) in in_effect(&cmd, &matches) {
        let Some(key) = key_of(arg) else { continue };
        let value = m.get_raw(arg.get_id().as_str()).map(|vals| {
            vals.map(|v| shown(key, &v.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(",")
        });
        let source = source_of.get(key).copied().unwrap_or(Source::Default);
        sources
            .by_key
            .insert(key.to_owned(), Setting { source, value });
    }
    let mut cli = Cli::from_arg_matches(&matches).map_err(ParseError::Clap)?;
    cli.sources = sources;
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_one_key() {
        let keys = setting_keys(&command());
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            keys.len(),
            "a key names two options: {keys:?}"
        );
        for k in [
            "database-url",
            "data-dir",
            "listen",
            "scim-rate-limit",
            "log",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
        assert!(!keys.iter().any(|x| x == "config" || x == "help"));
    }

    #[test]
    fn file_values_become_flags() {
        let cmd = command();
        let serve = cmd.find_subcommand("serve").unwrap();
        let arg = |id: &str| {
            serve
                .get_arguments()
                .chain(cmd.get_arguments())
                .find(|a| a.get_id() == id)
                .unwrap()
                .clone()
        };
        assert_eq!(
            flags_for(
                &arg("scim_rate_limit"),
                "scim-rate-limit",
                &toml::Value::Integer(5)
            )
            .unwrap(),
            ["--scim-rate-limit=5"]
        );
        assert_eq!(
            flags_for(
                &arg("trusted_proxies"),
                "trusted-proxies",
                &toml::Value::Array(vec!["10.0.0.0/8".into(), "::1".into()])
            )
            .unwrap(),
            ["--trusted-proxies=10.0.0.0/8,::1"]
        );
        assert_eq!(
            flags_for(
                &arg("bench_floor"),
                "bench-floor",
                &toml::Value::Boolean(true)
            )
            .unwrap(),
            ["--bench-floor"]
        );
        assert!(flags_for(
            &arg("bench_floor"),
            "bench-floor",
            &toml::Value::Boolean(false)
        )
        .unwrap()
        .is_empty());
        assert!(flags_for(&arg("bench_floor"), "bench-floor", &"yes".into()).is_err());
    }
}
