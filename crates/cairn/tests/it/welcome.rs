//! Getting people started (issue 22) with the real binary: one-time sign-in links from
//! the CLI (single use, expiry seen from a server whose clock runs ahead, tenant
//! isolation), and mail through a local SMTP sink (aiosmtpd from PyPI,
//! `requirements-dev.txt`, writing a Maildir): the welcome mail on a SCIM create (also
//! in a Bulk request), "Send sign-in link" and "Send to all", the outbox retried after
//! the relay was down and across a restart, and the single reminder.
//! `CAIRN_TEST_BACKEND` picks the database.

use crate::support::*;
use reqwest::header;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DAY: i64 = 86_400;

/// A local SMTP sink: aiosmtpd on a loopback port, each message a file in a Maildir.
struct SmtpSink {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

fn python() -> String {
    std::env::var("CAIRN_PYTHON").unwrap_or_else(|_| "python3".into())
}

impl SmtpSink {
    fn start() -> SmtpSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    fn start_on(port: u16) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let mut child = Command::new(python())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start aiosmtpd: {e} (pip install aiosmtpd; scripts/test installs it)")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return SmtpSink { port, dir, child };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("aiosmtpd did not listen on {port}");
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// Every message received so far, oldest first.
    fn messages(&self) -> Vec<Mail> {
        read_maildir(&self.maildir())
    }

    /// Waits until `n` messages arrived (at most 60 s).
    async fn wait_for(&self, n: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "{n} mail(s) expected, {} arrived",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One received message.
#[derive(Debug, Clone)]
struct Mail {
    to: String,
    subject: String,
    /// The body with quoted-printable soft line breaks undone.
    body: String,
}

impl Mail {
    /// The path of the sign-in link in the mail (`/me/link/…`).
    fn link_path(&self) -> String {
        let i = self
            .body
            .find("/me/link/")
            .expect("a sign-in link in the mail");
        self.body[i..i + "/me/link/".len() + 64].to_owned()
    }
}

fn read_maildir(dir: &Path) -> Vec<Mail> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = ["new", "cur"]
        .iter()
        .filter_map(|d| std::fs::read_dir(dir.join(d)).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| (e.metadata().unwrap().modified().unwrap(), e.path()))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|(_, p)| {
            let raw = std::fs::read_to_string(p).unwrap();
            let (head, body) = raw
                .split_once("\r\n\r\n")
                .or_else(|| raw.split_once("\n\n"))
                .unwrap();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| {
                        l.split_once(':')
                            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v.trim().to_owned())
                    })
                    .unwrap_or_default()
            };
            Mail {
                to: header("To"),
                subject: header("Subject"),
                body: body.replace("=\r\n", "").replace("=\n", ""),
            }
        })
        .collect()
}

/// An Okta-shaped SCIM create (Okta's "Create User" request).
fn okta_user(user_name: &str, email: Option<&str>) -> Value {
    let mut u = json!({
        "schemas": [USER_URN],
        "userName": user_name,
        "name": {"givenName": "Ann", "familyName": "Example"},
        "active": true,
        "displayName": "Ann Example",
        "locale": "en-US",
        "externalId": "00u1abcd",
        "groups": [],
        "password": "ignored-by-cairn"
    });
    if let Some(e) = email {
        u["emails"] = json!([{"primary": true, "value": e, "type": "work"}]);
    }
    u
}

fn mail_opts(sink_url: &str, extra: &[(&str, String)]) -> Opts {
    let mut env = vec![
        ("CAIRN_SMTP_URL".to_owned(), sink_url.to_owned()),
        ("CAIRN_MAIL_POLL_MS".to_owned(), "200".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Opts {
        env,
        ..Opts::default()
    }
}

impl TestApp {
    async fn open_link(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// Uses a link as the confirm page's button does; the account cookie, if any.
    async fn use_link(&self, path: &str) -> (u16, Option<String>) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header(header::ORIGIN, &self.base)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            cookie_set_by(r.headers(), "cairn_account"),
        )
    }

    async fn me(&self, cookie: &str) -> (u16, String) {
        let r = self
            .get("/me")
            .header(header::COOKIE, cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    fn audit_actions(&self, tenant: &str) -> Vec<String> {
        self.cli(&["audit", "--tenant", tenant, "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn cli_links_work_once_expire_and_stay_in_their_tenant() {
    let app = TestApp::spawn().await;
    let a = app.tenant("Acme");
    let b = app.tenant("Globex");
    a.create_user(&okta_user("ann@acme.test", Some("ann@acme.test")))
        .await;
    b.create_user(&okta_user("bob@globex.test", Some("bob@globex.test")))
        .await;
    let out = app
        .cli(&[
            "account",
            "sign-in-link",
            "--tenant",
            &a.id,
            "--user",
            "ann@acme.test",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(out["user_name"], "ann@acme.test");
    assert_eq!(out["email"], "ann@acme.test");
    let link = out["link"].as_str().unwrap();
    let path = link.strip_prefix(&app.base).unwrap().to_owned();
    assert!(path.starts_with("/me/link/"), "{link}");
    let expires = time::OffsetDateTime::parse(
        out["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let days = (expires - time::OffsetDateTime::now_utc()).whole_hours();
    assert!((7 * 24 - 1..=7 * 24).contains(&days), "{days} hours");

    // Another tenant's account is not found through this tenant.
    let other = app.cli(&[
        "account",
        "sign-in-link",
        "--tenant",
        &a.id,
        "--user-name",
        "bob@globex.test",
    ]);
    assert!(!other.status.success());

    // Seen from a server 8 days ahead, the link has expired and starts nothing.
    let later = TestApp::spawn_on(
        app.deployment.clone(),
        Opts {
            env: vec![("CAIRN_CLOCK_OFFSET_SECS".into(), (8 * DAY).to_string())],
            ..Opts::default()
        },
    )
    .await;
    let later_path = path.clone();
    let r = later.open_link(&later_path).await;
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("expired"));
    let (status, cookie) = later.use_link(&later_path).await;
    assert_eq!((status, cookie), (410, None));

    // Now: it opens Ann's page (her tenant's repository), once.
    let r = app.open_link(&path).await;
    assert_eq!(r.status(), 200);
    let (status, cookie) = app.use_link(&path).await;
    assert_eq!(status, 200);
    let cookie = cookie.expect("account session");
    let (status, page) = app.me(&cookie).await;
    assert_eq!(status, 200);
    assert!(page.contains("ann@acme.test"));
    assert!(page.contains(&format!("/backup/{}/", a.id)), "{page}");
    assert!(!page.contains(&b.id));
    // The account cookie opens no dashboard page.
    let r = app
        .get("/accounts")
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (status, again) = app.use_link(&path).await;
    assert_eq!((status, again), (410, None));

    let actions = app.audit_actions(&a.id);
    assert!(actions.contains(&"account_sign_in_link_created".to_owned()));
    assert!(actions.contains(&"account_sign_in_link_used".to_owned()));
    assert!(!app
        .audit_actions(&b.id)
        .iter()
        .any(|a| a.starts_with("account_sign_in_link")));
}

#[tokio::test]
async fn a_scim_create_gets_a_welcome_mail_whose_link_works_once() {
    let sink = SmtpSink::start();
    let app = TestApp::spawn_with(mail_opts(&sink.url(), &[])).await;
    let t = app.tenant("Acme");
    // Before the setting is on: no mail.
    t.create_user(&okta_user("early@acme.test", Some("early@acme.test")))
        .await;
    let on = app
        .cli(&["tenant", "welcome", "--tenant", &t.id, "--on", "--json"])
        .ok()
        .json();
    assert_eq!(on["welcome"], true);
    assert_eq!(on["remind_days"], Value::Null);

    t.create_user(&okta_user("ann@acme.test", Some("ann@acme.test")))
        .await;
    // No email: no mail.
    t.create_user(&okta_user("nomail@acme.test", None)).await;
    // A Bulk create is welcomed too (RFC 7644 §3.7).
    let bulk = t
        .post(
            "/Bulk",
            &json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "Operations": [{
                    "method": "POST", "path": "/Users", "bulkId": "b1",
                    "data": okta_user("bulk@acme.test", Some("bulk@acme.test"))
                }]
            }),
        )
        .await;
    assert_eq!(bulk.status, 200, "{}", bulk.text);

    let mails = sink.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mails_after = sink.messages();
    assert_eq!(mails_after.len(), 2, "{mails_after:?}");
    let mut to: Vec<&str> = mails.iter().map(|m| m.to.as_str()).collect();
    to.sort();
    assert_eq!(to, ["ann@acme.test", "bulk@acme.test"]);
    let ann = mails.iter().find(|m| m.to == "ann@acme.test").unwrap();
    assert_eq!(ann.subject, "Acme: your backup account is ready");
    assert!(ann.body.contains("Hello Ann Example"), "{}", ann.body);
    let path = ann.link_path();
    assert!(ann.body.contains(&format!("{}{path}", app.base)));

    // The GET (a mail scanner's prefetch) does not use it; the POST does, once.
    for _ in 0..2 {
        assert_eq!(app.open_link(&path).await.status(), 200);
    }
    let (status, cookie) = app.use_link(&path).await;
    assert_eq!(status, 200);
    let (status, page) = app.me(&cookie.unwrap()).await;
    assert_eq!(status, 200);
    assert!(page.contains("ann@acme.test") && page.contains("Never backed up"));
    assert_eq!(app.use_link(&path).await, (410, None));

    // The link was made by Cairn when the mail was sent: audited, never in the log.
    let actions = app.audit_actions(&t.id);
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "account_sign_in_link_created")
            .count(),
        2
    );
    assert!(!app.log().contains(&path[9..]));
}

#[tokio::test]
async fn administrators_send_links_to_one_or_to_all_who_never_backed_up() {
    let sink = SmtpSink::start();
    let app = TestApp::spawn_with(mail_opts(&sink.url(), &[])).await;
    let t = app.tenant("Acme");
    let admin_cli = app.cli_stdin(
        &[
            "user",
            "create",
            "--tenant",
            &t.id,
            "--email",
            "root@acme.test",
            "--role",
            "administrator",
            "--password-stdin",
        ],
        Some("correct horse battery staple\n"),
    );
    assert!(admin_cli.status.success(), "{}", admin_cli.stderr);
    let session = app
        .sign_in("root@acme.test", "correct horse battery staple")
        .await;
    let ann = t
        .create_user(&okta_user("ann@acme.test", Some("ann@acme.test")))
        .await;
    t.create_user(&okta_user("bo@acme.test", Some("bo@acme.test")))
        .await;
    t.create_user(&okta_user("cy@acme.test", None)).await;

    let page = app
        .get(&format!("/accounts/{}", ann["id"].as_str().unwrap()))
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Send sign-in link"), "{page}");
    let csrf = csrf_of(&page);
    let r = app
        .client
        .post(format!(
            "{}/accounts/{}/sign-in-link/send",
            app.base,
            ann["id"].as_str().unwrap()
        ))
        .header(header::ORIGIN, &app.base)
        .header(header::COOKIE, &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mails = sink.wait_for(1).await;
    assert_eq!(mails[0].to, "ann@acme.test");
    assert_eq!(mails[0].subject, "Acme: sign in to your backup account");

    // The CSV: a new link for each of the three (no email is fine there).
    let r = app
        .client
        .post(format!("{}/accounts/sign-in-links.csv", app.base))
        .header(header::ORIGIN, &app.base)
        .header(header::COOKIE, &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "user_name,email,link,expires_at");
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[1].starts_with("\"ann@acme.test\",\"ann@acme.test\",\""));
    assert!(lines[3].starts_with("\"cy@acme.test\",\"\",\""));
    let csv_link = lines[2].split(',').nth(2).unwrap().trim_matches('"');
    let csv_path = csv_link.strip_prefix(&app.base).unwrap();
    assert_eq!(app.open_link(csv_path).await.status(), 200);

    // "Send to all": the two with an email.
    let r = app
        .client
        .post(format!("{}/accounts/sign-in-links/send", app.base))
        .header(header::ORIGIN, &app.base)
        .header(header::COOKIE, &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[header::LOCATION], "/accounts?sent=2");
    let mails = sink.wait_for(3).await;
    let mut to: Vec<&str> = mails[1..].iter().map(|m| m.to.as_str()).collect();
    to.sort();
    assert_eq!(to, ["ann@acme.test", "bo@acme.test"]);
    let actions = app.audit_actions(&t.id);
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "sign_in_mail_queued")
            .count(),
        2
    );
    // 1 sent + 3 exported + 2 sent.
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "account_sign_in_link_created")
            .count(),
        6
    );
}

#[tokio::test]
async fn the_outbox_keeps_mail_while_the_relay_is_down_and_across_a_restart() {
    // A port with nothing listening: the relay is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("smtp://127.0.0.1:{port}");
    let mut app = TestApp::spawn_with(mail_opts(&down, &[])).await;
    let t = app.tenant("Acme");
    app.cli(&["tenant", "welcome", "--tenant", &t.id, "--on"])
        .ok();
    // The create does not wait on the relay.
    let started = Instant::now();
    t.create_user(&okta_user("ann@acme.test", Some("ann@acme.test")))
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !app.log().contains("sending a mail failed; retried later") {
        assert!(Instant::now() < deadline, "{}", app.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.terminate();

    // The relay is back; the restarted server (its clock past the retry delay) sends
    // the queued mail, once.
    let sink = SmtpSink::start_on(port);
    let app = TestApp::spawn_on(
        app.deployment.clone(),
        mail_opts(&down, &[("CAIRN_CLOCK_OFFSET_SECS", "3600".to_owned())]),
    )
    .await;
    let mails = sink.wait_for(1).await;
    assert_eq!(mails[0].to, "ann@acme.test");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.messages().len(), 1);
    // The link in it works.
    assert_eq!(app.use_link(&mails[0].link_path()).await.0, 200);
}

#[tokio::test]
async fn a_reminder_goes_once_to_an_account_without_a_backup() {
    let sink = SmtpSink::start();
    let app = TestApp::spawn_with(mail_opts(&sink.url(), &[])).await;
    let t = app.tenant("Acme");
    let on = app
        .cli(&[
            "tenant",
            "welcome",
            "--tenant",
            &t.id,
            "--on",
            "--remind-days",
            "3",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(on["remind_days"], 3);
    t.create_user(&okta_user("ann@acme.test", Some("ann@acme.test")))
        .await;
    sink.wait_for(1).await;
    // Days later, scanning every second: one reminder, however many scans.
    let later = TestApp::spawn_on(
        app.deployment.clone(),
        mail_opts(
            &sink.url(),
            &[
                ("CAIRN_CLOCK_OFFSET_SECS", (4 * DAY).to_string()),
                ("CAIRN_MAIL_SCAN_SECS", "1".to_owned()),
            ],
        ),
    )
    .await;
    let mails = sink.wait_for(2).await;
    assert_eq!(mails[1].subject, "Acme: your backup is not set up yet");
    assert_eq!(mails[1].to, "ann@acme.test");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(sink.messages().len(), 2);
    // Its link is a new one, and works.
    assert_ne!(mails[0].link_path(), mails[1].link_path());
    assert_eq!(later.use_link(&mails[1].link_path()).await.0, 200);
    // Off: nothing more, and the CLI says so.
    let off = app
        .cli(&["tenant", "welcome", "--tenant", &t.id, "--off", "--json"])
        .ok()
        .json();
    assert_eq!(off["welcome"], false);
}
