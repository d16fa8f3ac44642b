//! Getting people started (issue 22): one-time sign-in links for backup accounts made on
//! the account page (administrators, CSRF), opened with a GET that changes nothing and
//! used by an origin-checked POST, once, before they expire; My Backup's last backup and
//! restic commands; and a backup user's 403 on every administrator page.

use super::*;
use cairn_core::audit::AuditQuery;

/// The sign-in URL shown once on the account page.
fn shown_link(body: &str) -> String {
    let url = field_value(body, "<code class=\"secret sign-in-url\">");
    url.split('<').next().unwrap().to_owned()
}

fn account_cookie(res: &Resp) -> Option<String> {
    let name = crate::sso::account_cookie_name(false);
    res.cookies()
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")) && !c.contains("Max-Age=0"))
        .map(|c| c.split(';').next().unwrap().to_owned())
}

impl Harness {
    async fn audit_actions(&self) -> Vec<String> {
        self.services
            .audit_log(&self.tenant, &AuditQuery::default())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    /// A link made as the operator would (`cairn account sign-in-link`): its path.
    async fn operator_link(&self, id: &str) -> String {
        let op = OperatorCtx::local_operator();
        let l = self
            .services
            .create_account_sign_in_link(
                Authority::Operator(&op),
                &self.tenant,
                &cairn_core::ids::UserId::parse(id).unwrap(),
                &RequestMeta::default(),
            )
            .await
            .unwrap();
        l.url.strip_prefix(ORIGIN).unwrap().to_owned()
    }
}

#[tokio::test]
async fn an_administrator_makes_a_sign_in_link_that_works_once() {
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let id = h.provision(&ctx, "<i>ann</i>@x.io", "Ann").await;
    let admin = h.sign_in(ADMIN).await;
    let viewer = h.sign_in(VIEWER).await;

    let page = h.get(&format!("/accounts/{id}"), Some(&viewer)).await;
    assert!(!page.body.contains("Copy sign-in link"), "{}", page.body);
    let r = h
        .post(
            &format!("/accounts/{id}/sign-in-link"),
            Some(&viewer),
            Some(ORIGIN),
            form(&[("csrf", &page.csrf())]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let page = h.get(&format!("/accounts/{id}"), Some(&admin)).await;
    assert!(page.body.contains("Copy sign-in link"), "{}", page.body);
    let r = h
        .post(
            &format!("/accounts/{id}/sign-in-link"),
            Some(&admin),
            Some(ORIGIN),
            form(&[("csrf", "wrong")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!h
        .audit_actions()
        .await
        .contains(&"account_sign_in_link_created".to_owned()));

    let r = h
        .post(
            &format!("/accounts/{id}/sign-in-link"),
            Some(&admin),
            Some(ORIGIN),
            form(&[("csrf", &page.csrf())]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    let url = shown_link(&r.body);
    assert!(url.starts_with(&format!("{ORIGIN}/me/link/")), "{url}");
    let path = url.strip_prefix(ORIGIN).unwrap().to_owned();
    // The account page shown afterwards no longer holds it.
    let again = h.get(&format!("/accounts/{id}"), Some(&admin)).await;
    assert!(!again.body.contains(&path));

    // GET changes nothing (a mail scanner may fetch it): twice, and no session.
    for _ in 0..2 {
        let g = h.get(&path, None).await;
        assert_eq!(g.status, StatusCode::OK, "{}", g.body);
        assert!(account_cookie(&g).is_none());
        // The name is escaped.
        assert!(
            g.body.contains("&#60;i&#62;ann&#60;/i&#62;@x.io"),
            "{}",
            g.body
        );
        assert!(!g.body.contains("<i>ann"));
    }
    // Another origin, or none: refused, the link still live.
    for origin in [Some("http://evil.test"), None] {
        let r = h.post(&path, None, origin, String::new()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin:?}");
        assert!(account_cookie(&r).is_none());
    }
    let r = h.post(&path, None, Some(ORIGIN), String::new()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("url=/me"), "{}", r.body);
    let cookie = account_cookie(&r).expect("account session cookie");
    let me = h.get("/me", Some(&cookie)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert!(me.body.contains("&#60;i&#62;ann&#60;/i&#62;@x.io"));

    // Used: 410 for GET and POST, and no session.
    let g = h.get(&path, None).await;
    assert_eq!(g.status, StatusCode::GONE);
    assert!(g.body.contains("used already"), "{}", g.body);
    let r = h.post(&path, None, Some(ORIGIN), String::new()).await;
    assert_eq!(r.status, StatusCode::GONE);
    assert!(account_cookie(&r).is_none());

    let actions = h.audit_actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "account_sign_in_link_created")
            .count(),
        1
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "account_sign_in_link_used")
            .count(),
        1
    );
    // The audit entries never hold the link.
    let secret = path.rsplit('/').next().unwrap();
    for e in h
        .services
        .audit_log(&h.tenant, &AuditQuery::default())
        .await
        .unwrap()
    {
        assert!(!e.changes.to_string().contains(secret));
    }
}

#[tokio::test]
async fn expired_unknown_and_malformed_links_start_no_session() {
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let id = h.provision(&ctx, "bob@x.io", "Bob").await;
    let path = h.operator_link(&id).await;
    h.clock
        .advance(cairn_core::welcome::ACCOUNT_LINK_LIFETIME + time::Duration::minutes(1));
    let g = h.get(&path, None).await;
    assert_eq!(g.status, StatusCode::GONE);
    assert!(g.body.contains("expired"), "{}", g.body);
    let r = h.post(&path, None, Some(ORIGIN), String::new()).await;
    assert_eq!(r.status, StatusCode::GONE);
    assert!(account_cookie(&r).is_none());

    let unknown = format!("/me/link/{}", "ab".repeat(32));
    let malformed = "/me/link/not-a-link".to_owned();
    for p in [unknown, malformed] {
        assert_eq!(h.get(&p, None).await.status, StatusCode::BAD_REQUEST, "{p}");
        let r = h.post(&p, None, Some(ORIGIN), String::new()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{p}");
        assert!(account_cookie(&r).is_none());
    }

    // A suspended account gets no link, and its live link stops working.
    let path = h.operator_link(&id).await;
    let op = OperatorCtx::local_operator();
    let uid = cairn_core::ids::UserId::parse(&id).unwrap();
    h.services
        .update_user(&ctx, &id, None, &RequestMeta::default(), |u| {
            let mut d = u.data();
            d.active = false;
            Ok::<_, cairn_core::Error>(d)
        })
        .await
        .unwrap();
    let r = h.post(&path, None, Some(ORIGIN), String::new()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(account_cookie(&r).is_none());
    let e = h
        .services
        .create_account_sign_in_link(
            Authority::Operator(&op),
            &h.tenant,
            &uid,
            &RequestMeta::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, cairn_core::Error::Invalid { .. }), "{e:?}");
}

#[tokio::test]
async fn my_backup_shows_the_last_backup_and_restic_commands() {
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let id = h.provision(&ctx, "carol@x.io", "Carol").await;
    let path = h.operator_link(&id).await;
    let r = h.post(&path, None, Some(ORIGIN), String::new()).await;
    let cookie = account_cookie(&r).unwrap();
    let me = h.get("/me", Some(&cookie)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert!(me.body.contains("Never backed up"), "{}", me.body);
    let repo = format!(
        "rest:http://KEY-USER:KEY-SECRET@cairn.test/backup/{}/{id}/",
        h.tenant
    );
    assert!(
        me.body
            .contains(&format!("export RESTIC_REPOSITORY=&#39;{repo}&#39;")),
        "{}",
        me.body
    );
    assert!(me
        .body
        .contains(&format!("$env:RESTIC_REPOSITORY = &#39;{repo}&#39;")));
    for cmd in ["restic init", "restic snapshots", "restic restore latest"] {
        assert!(me.body.matches(cmd).count() >= 2, "{cmd}");
    }

    // A key made on the page: the commands hold it (this once).
    let r = h
        .post(
            "/me/backup-key",
            Some(&cookie),
            Some(ORIGIN),
            form(&[("csrf", &me.csrf()), ("name", "laptop")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let user = field_value(&r.body, "<dt>User</dt><dd><code>");
    let user = user.split('<').next().unwrap();
    let secret = field_value(&r.body, "<dt>Secret</dt><dd><code class=\"secret\">");
    let secret = secret.split('<').next().unwrap();
    let with_key = format!(
        "rest:http://{user}:{secret}@cairn.test/backup/{}/{id}/",
        h.tenant
    );
    assert!(
        r.body
            .contains(&format!("export RESTIC_REPOSITORY=&#39;{with_key}&#39;")),
        "{}",
        r.body
    );
    assert!(!r.body.contains("KEY-USER:KEY-SECRET@"));
    let later = h.get("/me", Some(&cookie)).await;
    assert!(!later.body.contains(secret));
    assert!(later.body.contains("KEY-USER:KEY-SECRET@"));
}

/// Every dashboard route but the public ones (sign-in, links, static files), read from
/// the router's source so that a page added later is covered too.
fn admin_routes() -> Vec<String> {
    let src = include_str!("../mod.rs");
    let public = [
        "/",
        "/login",
        "/logout",
        "/login/second-factor",
        "/login/enrol",
        "/invite/{token}",
        "/static/app.css",
        "/static/app.js",
        "/static/favicon.svg",
        // The license text every page's footer links to (AGPL-3.0 section 13).
        "/license",
    ];
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let Some(start) = rest.find('"') else { break };
        let path = rest[start + 1..].split('"').next().unwrap();
        if !public.contains(&path) && !out.iter().any(|p: &String| p == path) {
            out.push(path.to_owned());
        }
    }
    out
}

#[tokio::test]
async fn a_backup_user_gets_403_on_every_administrator_page() {
    let h = Harness::new().await;
    let ctx = h.scim_ctx().await;
    let id = h.provision(&ctx, "dave@x.io", "Dave").await;
    let path = h.operator_link(&id).await;
    let r = h.post(&path, None, Some(ORIGIN), String::new()).await;
    let cookie = account_cookie(&r).unwrap();
    let routes = admin_routes();
    assert!(routes.len() >= 20, "{routes:?}");
    assert!(routes.contains(&"/accounts/{id}/sign-in-link".to_owned()));
    for route in &routes {
        let p = route.replace("{id}", &id);
        let g = h.get(&p, Some(&cookie)).await;
        let post = h
            .post(&p, Some(&cookie), Some(ORIGIN), form(&[("csrf", "x")]))
            .await;
        for (method, status) in [("GET", g.status), ("POST", post.status)] {
            assert!(
                status == StatusCode::FORBIDDEN || status == StatusCode::METHOD_NOT_ALLOWED,
                "{method} {p}: {status}"
            );
        }
        assert!(
            g.status == StatusCode::FORBIDDEN || post.status == StatusCode::FORBIDDEN,
            "{p}"
        );
    }
    // Without any session the same pages still ask to sign in.
    let g = h.get("/accounts", None).await;
    assert_eq!(g.status, StatusCode::SEE_OTHER);
    // And the account's own page stays open.
    assert_eq!(h.get("/me", Some(&cookie)).await.status, StatusCode::OK);
}
