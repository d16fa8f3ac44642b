//! `cairn user list|invite|set-role|disable|enable|delete|reset-password|reset2fa` with
//! `--json` (issue 22): the shapes scripts rely on, the last-administrator rule, and the
//! audit entries the changes leave.

use crate::support::*;
use serde_json::{json, Value};

fn cli(d: &Deployment, args: &[&str]) -> Cli {
    run_cli(d, Some("https://backup.example.com/"), args, None)
}

fn create(d: &Deployment, tenant: &str, email: &str, role: &str) {
    run_cli(
        d,
        None,
        &[
            "user",
            "create",
            "--tenant",
            tenant,
            "--email",
            email,
            "--role",
            role,
            "--password-stdin",
        ],
        Some("correct horse battery staple\n"),
    )
    .ok();
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[test]
fn user_administration_from_the_command_line() {
    let d = Deployment::new();
    let t = cli(&d, &["tenant", "create", "--name", "Acme", "--json"])
        .ok()
        .json();
    let id = t["id"].as_str().unwrap().to_owned();
    create(&d, &id, "admin@acme.test", "administrator");
    create(&d, &id, "viewer@acme.test", "viewer");

    let list = cli(&d, &["user", "list", "--tenant", &id, "--json"])
        .ok()
        .json();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        keys(&rows[0]),
        [
            "disabled",
            "email",
            "id",
            "last_sign_in_at",
            "role",
            "second_factor",
            "single_sign_on",
            "status"
        ]
    );
    assert_eq!(rows[0]["email"], "admin@acme.test");
    assert_eq!(rows[0]["status"], "active");
    assert_eq!(rows[0]["last_sign_in_at"], Value::Null);
    assert_eq!(rows[1]["role"], "viewer");

    // Invite: a one-time link under the public URL.
    let inv = cli(
        &d,
        &[
            "user",
            "invite",
            "--tenant",
            &id,
            "--email",
            "new@acme.test",
            "--role",
            "viewer",
            "--json",
        ],
    )
    .ok()
    .json();
    let link = inv["link"].as_str().unwrap();
    assert!(
        link.starts_with("https://backup.example.com/invite/"),
        "{link}"
    );
    assert_eq!(link.len(), "https://backup.example.com/invite/".len() + 64);
    assert_eq!(inv["email"], "new@acme.test");

    // The last active administrator: not demoted, disabled or deleted.
    for cmd in [
        vec![
            "user",
            "set-role",
            "--tenant",
            &id,
            "--email",
            "admin@acme.test",
            "--role",
            "viewer",
        ],
        vec![
            "user",
            "disable",
            "--tenant",
            &id,
            "--email",
            "admin@acme.test",
        ],
        vec![
            "user",
            "delete",
            "--tenant",
            &id,
            "--email",
            "admin@acme.test",
        ],
    ] {
        let mut args = cmd.clone();
        args.push("--json");
        let c = cli(&d, &args);
        assert!(!c.status.success(), "{c:?}");
        assert!(c.stderr.contains("last active administrator"), "{c:?}");
        assert!(c.stdout.trim().is_empty());
    }

    let v = cli(
        &d,
        &[
            "user",
            "set-role",
            "--tenant",
            &id,
            "--email",
            "viewer@acme.test",
            "--role",
            "administrator",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(
        v,
        json!({"id": v["id"], "email": "viewer@acme.test", "role": "administrator",
               "disabled": false, "second_factor": false, "deleted": false})
    );
    let v = cli(
        &d,
        &[
            "user",
            "disable",
            "--tenant",
            &id,
            "--email",
            "admin@acme.test",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(v["disabled"], true);
    let v = cli(
        &d,
        &[
            "user",
            "enable",
            "--tenant",
            &id,
            "--email",
            "admin@acme.test",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(v["disabled"], false);
    let r = cli(
        &d,
        &[
            "user",
            "reset-password",
            "--tenant",
            &id,
            "--email",
            "admin@acme.test",
            "--json",
        ],
    )
    .ok()
    .json();
    assert!(r["link"].as_str().unwrap().contains("/invite/"));
    assert_ne!(r["link"], inv["link"]);
    let v = cli(
        &d,
        &[
            "user",
            "delete",
            "--tenant",
            &id,
            "--email",
            "new@acme.test",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(v["deleted"], true);
    let c = cli(
        &d,
        &[
            "user",
            "delete",
            "--tenant",
            &id,
            "--email",
            "new@acme.test",
            "--json",
        ],
    );
    assert!(
        !c.status.success() && c.stderr.contains("not found"),
        "{c:?}"
    );

    let list = cli(&d, &["user", "list", "--tenant", &id, "--json"])
        .ok()
        .json();
    let statuses: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["email"].as_str().unwrap(), u["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("admin@acme.test", "invited"),
            ("viewer@acme.test", "active")
        ]
    );

    let audit = cli(&d, &["audit", "--tenant", &id, "--json"]).ok().json();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "dashboard_user_invited",
        "dashboard_user_role_changed",
        "dashboard_user_disabled",
        "dashboard_user_enabled",
        "dashboard_password_reset",
        "dashboard_user_deleted",
    ] {
        assert!(actions.contains(&a), "{a}: {actions:?}");
    }
    let e = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "dashboard_user_role_changed")
        .unwrap();
    assert_eq!(e["actor_kind"], "operator", "{e}");
}
