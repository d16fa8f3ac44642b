//! The copy-paste restic commands on a backup account's own page (`/me`): init, backup,
//! snapshots and restore, for Linux and macOS (POSIX sh) and for Windows (PowerShell),
//! with the repository URL filled in. The URL carries the backup key (restic's REST
//! backend takes basic-auth credentials in the URL: restic.readthedocs.io, "Preparing a
//! new repository", REST Server); right after a key is made it is the real one, otherwise
//! a placeholder the person replaces with the key they were given.
//!
//! Values are quoted for their shell here; the template escapes the result for HTML.

/// The commands for one repository URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResticCommands {
    /// Linux and macOS.
    pub sh: String,
    /// Windows.
    pub powershell: String,
    /// Whether the URL holds a real key (else the placeholder).
    pub with_key: bool,
}

/// The placeholder for the key's basic-auth user and secret.
pub const KEY_PLACEHOLDER: &str = "KEY-USER:KEY-SECRET";

/// `s` as one POSIX sh word: single quotes, a quote inside as `'\''` (POSIX, Shell
/// Command Language §2.2.2).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` as a PowerShell verbatim string: single quotes, a quote inside doubled
/// (about_Quoting_Rules). PowerShell also ends such strings at the typographic quotes
/// U+2018–U+201B, so those are doubled too.
pub fn powershell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The repository URL with the placeholder where the key goes
/// (`rest:https://KEY-USER:KEY-SECRET@host/…`).
pub fn with_placeholder(repository: &str) -> String {
    match repository.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{KEY_PLACEHOLDER}@{rest}"),
        None => repository.to_owned(),
    }
}

impl ResticCommands {
    /// `repository` is the full URL (with a real key when `with_key`).
    pub fn new(repository: &str, with_key: bool) -> Self {
        let sh = format!(
            "export RESTIC_REPOSITORY={}\n\
             restic init\n\
             restic backup \"$HOME/Documents\"\n\
             restic snapshots\n\
             restic restore latest --target \"$HOME/restored\"",
            sh_quote(repository)
        );
        let powershell = format!(
            "$env:RESTIC_REPOSITORY = {}\n\
             restic init\n\
             restic backup \"$HOME\\Documents\"\n\
             restic snapshots\n\
             restic restore latest --target \"$HOME\\restored\"",
            powershell_quote(repository)
        );
        ResticCommands {
            sh,
            powershell,
            with_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_cannot_be_escaped_from() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(sh_quote("$(x) `y`"), "'$(x) `y`'");
        assert_eq!(powershell_quote("a'b"), "'a''b'");
        assert_eq!(powershell_quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
        assert_eq!(powershell_quote("$env:X"), "'$env:X'");
    }

    #[test]
    fn the_placeholder_goes_where_the_key_goes() {
        assert_eq!(
            with_placeholder("rest:https://backup.example/backup/t/u/"),
            "rest:https://KEY-USER:KEY-SECRET@backup.example/backup/t/u/"
        );
    }

    #[test]
    fn commands_name_the_repository_once_per_shell() {
        let c = ResticCommands::new("rest:http://u:s@127.0.0.1:1/backup/t/a/", true);
        assert!(c
            .sh
            .starts_with("export RESTIC_REPOSITORY='rest:http://u:s@127.0.0.1:1/backup/t/a/'\n"));
        assert!(c
            .powershell
            .starts_with("$env:RESTIC_REPOSITORY = 'rest:http://u:s@127.0.0.1:1/backup/t/a/'\n"));
        for cmd in [
            "restic init",
            "restic backup",
            "restic snapshots",
            "restic restore",
        ] {
            assert!(c.sh.contains(cmd) && c.powershell.contains(cmd), "{cmd}");
        }
    }
}
