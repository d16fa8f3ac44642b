//! Help that `args` leaves to one place: the text of options that recur across commands
//! (`--tenant`, `--json`, …) where a command gives none of its own, and an example for
//! every command (shown after its `--help`). A test walks the whole command tree: every
//! option has help text and every command an example.

use clap::Command;

/// Help for an option, by its id, where the command's definition has none.
const COMMON_HELP: &[(&str, &str)] = &[
    (
        "tenant",
        "The tenant's id (a UUID, as printed by `cairn tenant create` and `cairn tenant list`).",
    ),
    ("json", "Print JSON instead of text (for scripts)."),
    ("email", "The dashboard user's email address."),
    (
        "user_name",
        "The backup account's userName (as the identity provider sent it).",
    ),
    ("role", "The dashboard role."),
    ("name", "The name."),
    (
        "since",
        "Since this time: RFC 3339 (`2026-12-01T00:00:00Z`) or an age (`90m`, `6h`, `2d`).",
    ),
    ("days", "A number of days."),
    ("clear", "Remove the setting."),
    ("off", "Turn it off."),
    ("on", "Turn it on."),
    (
        "admins",
        "Single sign-on applies to the tenant's dashboard administrators.",
    ),
    (
        "all_accounts",
        "Single sign-on applies to all of the tenant's backup accounts.",
    ),
    ("gb", "The group's Account Size in GB."),
    ("minutes", "Minutes to keep capturing (at most 60)."),
    (
        "client_id",
        "The client id Cairn is registered under at the OpenID provider.",
    ),
];

/// Help for an option of one command, by command path and option id, where the shared
/// text above would not say enough.
const HELP: &[(&str, &str, &str)] = &[
    (
        "tenant create",
        "name",
        "The tenant's name, as shown in the dashboard.",
    ),
    (
        "account key",
        "name",
        "The key's name, unique in the account (any letter case), at most 64 characters.",
    ),
    (
        "account revoke-key",
        "name",
        "The name of the key to revoke (`cairn account keys` lists them).",
    ),
    (
        "vault stale-days",
        "days",
        "Days without a backup after which an account is stale (1 to 3650).",
    ),
    (
        "user create",
        "role",
        "The dashboard role: administrator (all settings) or viewer (read only).",
    ),
    (
        "user invite",
        "role",
        "The dashboard role: administrator (all settings) or viewer (read only).",
    ),
    (
        "user set-role",
        "role",
        "The new role: administrator or viewer.",
    ),
    (
        "user break-glass",
        "off",
        "Un-name the tenant's break-glass administrator.",
    ),
    (
        "sso password-sign-in",
        "off",
        "Turn password sign-in off (single sign-on only).",
    ),
    (
        "sso password-sign-in",
        "on",
        "Turn password sign-in back on.",
    ),
    (
        "vault undelete",
        "since",
        "Put back what was deleted since this time: RFC 3339 or an age (`90m`, `6h`, `2d`).",
    ),
    ("tenant limit", "clear", "Remove the cap."),
    (
        "group size",
        "clear",
        "Take the group's own Account Size away.",
    ),
    ("requests capture", "off", "Stop capturing now."),
];

/// An example for each command, by its path (shown after its `--help` as "Example:").
const EXAMPLES: &[(&str, &str)] = &[
    ("serve", "cairn serve --listen 0.0.0.0:8080 --public-url https://cairn.example.com\n  cairn --config /etc/cairn/cairn.toml serve"),
    ("tenant create", "cairn tenant create --name \"Acme Corp\" --json"),
    ("tenant list", "cairn tenant list"),
    ("tenant limit", "cairn tenant limit --tenant $TENANT --max-account-size-gb 500"),
    ("scim enable", "cairn scim enable --tenant $TENANT --account-size-gb 50"),
    ("scim disable", "cairn scim disable --tenant $TENANT"),
    ("scim token", "cairn scim token --tenant $TENANT --json"),
    ("sso saml", "cairn sso saml --tenant $TENANT --metadata-url https://idp.example.com/app/metadata"),
    ("sso oidc", "printf '%s\\n' \"$SECRET\" | cairn sso oidc --tenant $TENANT --issuer https://login.example.com --client-id cairn --client-secret-stdin"),
    ("sso scope", "cairn sso scope --tenant $TENANT --admins --accounts alice@example.com,bob@example.com"),
    ("sso disable", "cairn sso disable --tenant $TENANT"),
    ("sso role", "cairn sso role --tenant $TENANT --group \"Backup Admins\" --role administrator"),
    ("sso password-sign-in", "cairn sso password-sign-in --tenant $TENANT --off"),
    ("sso show", "cairn sso show --tenant $TENANT"),
    ("user create", "printf '%s\\n' \"$PASSWORD\" | cairn user create --tenant $TENANT --email it@example.com --role administrator --password-stdin"),
    ("user break-glass", "cairn user break-glass --tenant $TENANT --email it@example.com"),
    ("user list", "cairn user list --tenant $TENANT"),
    ("user invite", "cairn user invite --tenant $TENANT --email ada@example.com --role viewer"),
    ("user set-role", "cairn user set-role --tenant $TENANT --email ada@example.com --role administrator"),
    ("user disable", "cairn user disable --tenant $TENANT --email ada@example.com"),
    ("user enable", "cairn user enable --tenant $TENANT --email ada@example.com"),
    ("user delete", "cairn user delete --tenant $TENANT --email ada@example.com"),
    ("user reset-password", "cairn user reset-password --tenant $TENANT --email ada@example.com"),
    ("user reset2fa", "cairn user reset2fa --tenant $TENANT --email ada@example.com"),
    ("audit", "cairn audit --tenant $TENANT --limit 50"),
    ("requests", "cairn requests --tenant $TENANT --since 6h --status 4xx"),
    ("requests capture", "cairn requests capture --tenant $TENANT --minutes 15"),
    ("account restore", "cairn account restore --tenant $TENANT --user-name ada@example.com"),
    ("account key", "cairn account key --tenant $TENANT --user-name ada@example.com --name \"work laptop\""),
    ("account keys", "cairn account keys --tenant $TENANT --user-name ada@example.com"),
    ("account revoke-key", "cairn account revoke-key --tenant $TENANT --user-name ada@example.com --name \"work laptop\""),
    ("account recount", "cairn account recount --tenant $TENANT --user-name ada@example.com"),
    ("account purge-expired", "cairn account purge-expired"),
    ("group size", "cairn group size --tenant $TENANT --group Engineering --gb 200"),
    ("group list", "cairn group list --tenant $TENANT"),
    ("db copy", "cairn db copy --from sqlite:/var/lib/cairn/cairn.db \\\n    --to 'postgres://cairn@db.example.com/cairn?sslmode=verify-full&sslrootcert=/etc/cairn/db-ca.pem'"),
    ("db backup", "cairn --data-dir /var/lib/cairn db backup --to /var/backups/cairn-$(date +%F).db"),
    ("db restore", "systemctl stop cairn\n  cairn --data-dir /var/lib/cairn db restore --from /var/backups/cairn-2026-12-01.db"),
    ("db status", "cairn --data-dir /var/lib/cairn db status --json"),
    ("healthcheck", "cairn healthcheck --url http://127.0.0.1:8080/readyz"),
    ("tenant welcome", "cairn tenant welcome --tenant $TENANT --on --remind-days 3"),
    ("account sign-in-link", "cairn --public-url https://cairn.example.com account sign-in-link --tenant $TENANT --user alice@example.com"),
    ("man", "cairn man --dir /usr/share/man/man1"),
    ("accounts", "cairn accounts --tenant $TENANT --stale-days 3"),
    ("vault stale-days", "cairn vault stale-days --tenant $TENANT --days 3"),
    ("vault protect", "cairn vault protect --tenant $TENANT --days 30"),
    ("vault verify", "cairn vault verify --tenant $TENANT --max-mib-per-sec 50"),
    ("vault undelete", "cairn vault undelete --tenant $TENANT --user-name ada@example.com --since 2d"),
    ("completions", "cairn completions bash > /etc/bash_completion.d/cairn\n  cairn completions zsh > \"${fpath[1]}/_cairn\"\n  cairn completions fish > ~/.config/fish/completions/cairn.fish"),
    ("config show", "cairn --config /etc/cairn/cairn.toml config show"),
];

/// The command tree with the help above filled in.
pub fn document(cmd: Command) -> Command {
    fill(cmd, "")
}

fn fill(mut cmd: Command, path: &str) -> Command {
    let ids: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.get_help().is_none() && a.get_long_help().is_none())
        .map(|a| a.get_id().to_string())
        .collect();
    for id in ids {
        let text = HELP
            .iter()
            .find(|(p, i, _)| *p == path && *i == id)
            .map(|(_, _, t)| *t)
            .or_else(|| COMMON_HELP.iter().find(|(i, _)| *i == id).map(|(_, t)| *t));
        if let Some(text) = text {
            cmd = cmd.mut_arg(id.as_str(), |a| a.help(text));
        }
    }
    if let Some((_, ex)) = EXAMPLES.iter().find(|(p, _)| *p == path) {
        cmd = cmd.after_help(format!("Example:\n  {ex}"));
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in subs {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        cmd = cmd.mut_subcommand(name.as_str(), |s| fill(s, &sub_path));
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command with subcommands of its own, every runnable command and every option,
    /// with its path.
    fn walk(cmd: &Command, path: &str, problems: &mut Vec<String>, paths: &mut Vec<String>) {
        paths.push(path.to_owned());
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                problems.push(format!("`cairn {path}` --{id}: no help text"));
            }
        }
        let runnable = !cmd.is_subcommand_required_set() || cmd.get_subcommands().count() == 0;
        if !path.is_empty() && runnable && cmd.get_after_help().is_none() {
            problems.push(format!("`cairn {path}`: no example"));
        }
        for s in cmd.get_subcommands() {
            if s.get_name() == "help" {
                continue;
            }
            let p = if path.is_empty() {
                s.get_name().to_owned()
            } else {
                format!("{path} {}", s.get_name())
            };
            walk(s, &p, problems, paths);
        }
    }

    #[test]
    fn every_option_has_help_and_every_command_an_example() {
        let cmd = crate::cli::settings::command();
        let (mut problems, mut paths) = (Vec::new(), Vec::new());
        walk(&cmd, "", &mut problems, &mut paths);
        for (p, _) in EXAMPLES {
            if !paths.iter().any(|x| x == p) {
                problems.push(format!("example for `cairn {p}`, which does not exist"));
            }
        }
        for (p, id, _) in HELP {
            if !paths.iter().any(|x| x == p) {
                problems.push(format!("help for `cairn {p} --{id}`, which does not exist"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        cmd.debug_assert();
    }
}
