//! SP-initiated SAML 2.0 single sign-on (issue 17) against the real binary. The identity
//! provider's responses are built here and signed by the `xmlsec1` command-line tool
//! (Debian's xmlsec1), an XML-DSig implementation independent of the code under test's
//! verification path, with keys made by `openssl`. Each refusal is checked for: the
//! refusal page, no session cookie set, and the refusal with its reason in the tenant's
//! audit log.

use crate::support::*;
use base64::Engine;
use reqwest::header;
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

const IDP: &str = "https://idp.example.test/saml/metadata";
const ADMIN: &str = "ada@acme.test";
const BACKUP: &str = "bob@acme.test";
const PASSWORD: &str = "correct horse battery staple";

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn tools() -> bool {
    require(
        "the xmlsec1 and openssl commands (Debian: xmlsec1, openssl)",
        have("xmlsec1", "--version") && have("openssl", "version"),
    )
}

/// A key pair and self-signed certificate, made by openssl.
struct Key {
    key: PathBuf,
    cert: PathBuf,
}

impl Key {
    fn new(dir: &Path, name: &str) -> Key {
        let key = dir.join(format!("{name}.key"));
        let cert = dir.join(format!("{name}.crt"));
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .arg("-subj")
            .arg(format!("/CN={name}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Key { key, cert }
    }

    /// The certificate as base64 DER (the PEM body).
    fn cert_b64(&self) -> String {
        std::fs::read_to_string(&self.cert)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect()
    }
}

fn instant(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap()
}

/// What goes into one response; `Default`-like values come from [`Assertion::new`].
#[derive(Clone)]
struct Assertion {
    id: String,
    name_id: String,
    in_response_to: Option<String>,
    audience: String,
    recipient: String,
    destination: String,
    issuer: String,
    issue_instant: OffsetDateTime,
    not_before: OffsetDateTime,
    not_on_or_after: OffsetDateTime,
}

impl Assertion {
    fn new(sso: &Sso, request_id: &str, name_id: &str) -> Assertion {
        let now = OffsetDateTime::now_utc();
        Assertion {
            id: format!("_a{}", rand_hex()),
            name_id: name_id.to_owned(),
            in_response_to: Some(request_id.to_owned()),
            audience: sso.entity_id.clone(),
            recipient: sso.acs.clone(),
            destination: sso.acs.clone(),
            issuer: IDP.to_owned(),
            issue_instant: now,
            not_before: now - Duration::minutes(1),
            not_on_or_after: now + Duration::minutes(5),
        }
    }

    fn assertion_xml(&self, signature: bool) -> String {
        let irt = self
            .in_response_to
            .as_ref()
            .map(|i| format!(r#" InResponseTo="{i}""#))
            .unwrap_or_default();
        let sig = if signature {
            signature_template(&self.id)
        } else {
            String::new()
        };
        format!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{ii}"><saml:Issuer>{issuer}</saml:Issuer>{sig}<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{name}</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{noa}" Recipient="{recipient}"{irt}/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{nb}" NotOnOrAfter="{noa}"><saml:AudienceRestriction><saml:Audience>{aud}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="{ii}" SessionIndex="{id}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement></saml:Assertion>"#,
            id = self.id,
            ii = instant(self.issue_instant),
            issuer = self.issuer,
            name = self.name_id,
            noa = instant(self.not_on_or_after),
            nb = instant(self.not_before),
            recipient = self.recipient,
            aud = self.audience,
        )
    }

    fn response_xml(&self, inner: &str) -> String {
        let irt = self
            .in_response_to
            .as_ref()
            .map(|i| format!(r#" InResponseTo="{i}""#))
            .unwrap_or_default();
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r{rid}" Version="2.0" IssueInstant="{ii}" Destination="{dest}"{irt}><saml:Issuer>{issuer}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>{inner}</samlp:Response>"#,
            rid = rand_hex(),
            ii = instant(self.issue_instant),
            dest = self.destination,
            issuer = self.issuer,
        )
    }

    /// The response with its assertion signed by `key` (RSA-SHA256, exclusive c14n).
    fn signed(&self, dir: &Path, key: &Key) -> String {
        sign(dir, key, &self.response_xml(&self.assertion_xml(true)))
    }

    fn unsigned(&self) -> String {
        self.response_xml(&self.assertion_xml(false))
    }
}

fn signature_template(id: &str) -> String {
    format!(
        r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data></ds:X509Data></ds:KeyInfo></ds:Signature>"##
    )
}

/// Signs every signature template in `xml` with xmlsec1.
fn sign(dir: &Path, key: &Key, xml: &str) -> String {
    let n = rand_hex();
    let input = dir.join(format!("in-{n}.xml"));
    let output = dir.join(format!("out-{n}.xml"));
    std::fs::write(&input, xml).unwrap();
    let out = Command::new("xmlsec1")
        .arg("--sign")
        .arg("--privkey-pem")
        .arg(format!("{},{}", key.key.display(), key.cert.display()))
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
        ])
        .arg("--output")
        .arg(&output)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xmlsec1 --sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&output).unwrap()
}

fn rand_hex() -> String {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A server with tenant "acme" (SSO with the IdP key, scope: admins and all accounts),
/// an administrator, a backup account and a second tenant with its own account.
struct Sso {
    app: TestApp,
    tenant: Tenant,
    other: Tenant,
    idp: Key,
    attacker: Key,
    dir: tempfile::TempDir,
    entity_id: String,
    acs: String,
}

impl Sso {
    async fn start() -> Sso {
        Sso::start_with(Vec::new()).await
    }

    async fn start_with(args: Vec<String>) -> Sso {
        let app = TestApp::spawn_with(Opts {
            args,
            ..Opts::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let idp = Key::new(dir.path(), "idp");
        let attacker = Key::new(dir.path(), "attacker");
        let tenant = app.tenant("acme");
        let other = app.tenant("globex");
        app.cli_stdin(
            &[
                "user",
                "create",
                "--tenant",
                &tenant.id,
                "--email",
                ADMIN,
                "--role",
                "administrator",
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        )
        .ok();
        tenant
            .create_user(
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": BACKUP, "active": true}),
            )
            .await;
        other
            .create_user(
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "carol@globex.test", "active": true}),
            )
            .await;
        let metadata = idp_metadata(&idp.cert_b64());
        let md = dir.path().join("idp-metadata.xml");
        std::fs::write(&md, metadata).unwrap();
        app.cli(&[
            "sso",
            "saml",
            "--tenant",
            &tenant.id,
            "--metadata-file",
            md.to_str().unwrap(),
        ])
        .ok();
        app.cli(&[
            "sso",
            "scope",
            "--tenant",
            &tenant.id,
            "--admins",
            "--all-accounts",
        ])
        .ok();
        let show = app
            .cli(&["sso", "show", "--tenant", &tenant.id, "--json"])
            .ok()
            .json();
        let entity_id = show["service_provider"]["entity_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let acs = show["service_provider"]["acs_url"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(show["saml"]["enabled"], true);
        assert_eq!(show["saml"]["idp_entity_id"], IDP);
        Sso {
            app,
            tenant,
            other,
            idp,
            attacker,
            dir,
            entity_id,
            acs,
        }
    }

    /// Starts a sign-in: where Cairn sends the browser (the IdP, with the AuthnRequest).
    async fn login_redirect(&self) -> String {
        let r = self
            .app
            .get(&format!("/sso/{}/login", self.tenant.id))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_redirection(), "{}", r.status());
        r.headers()[header::LOCATION].to_str().unwrap().to_owned()
    }

    /// Starts a sign-in: the AuthnRequest's id, read back from the redirect to the IdP.
    async fn login(&self) -> String {
        let loc = self.login_redirect().await;
        assert!(loc.starts_with("https://idp.example.test/sso?"), "{loc}");
        let url = reqwest::Url::parse(&loc).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(pairs
            .iter()
            .any(|(k, v)| k == "RelayState" && !v.contains('/')));
        let req = &pairs.iter().find(|(k, _)| k == "SAMLRequest").unwrap().1;
        let deflated = base64::engine::general_purpose::STANDARD
            .decode(req)
            .unwrap();
        let mut xml = String::new();
        flate2::read::DeflateDecoder::new(&deflated[..])
            .read_to_string(&mut xml)
            .unwrap();
        assert!(xml.contains(&format!("AssertionConsumerServiceURL=\"{}\"", self.acs)));
        let id = xml
            .split(" ID=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(id.len() > 40, "request ids carry 256 random bits: {id}");
        id.to_owned()
    }

    async fn post_to(&self, tenant: &str, xml: &str) -> reqwest::Response {
        let b64 = base64::engine::general_purpose::STANDARD.encode(xml);
        self.app
            .client
            .post(format!("{}/sso/{tenant}/saml/acs", self.app.base))
            // The identity provider's page posts it: another origin.
            .header(header::ORIGIN, "https://idp.example.test")
            .form(&[("SAMLResponse", b64.as_str()), ("RelayState", "opaque")])
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, xml: &str) -> reqwest::Response {
        self.post_to(&self.tenant.id, xml).await
    }

    fn audit(&self) -> Vec<Value> {
        let out = self
            .app
            .cli(&["audit", "--tenant", &self.tenant.id, "--json"])
            .ok()
            .json();
        out.as_array().cloned().unwrap_or_default()
    }

    /// Asserts the response is a refusal that set no cookie, and that the newest audit
    /// entry is that refusal, with `reason`.
    async fn assert_refused(&self, r: reqwest::Response, reason: &str) {
        let headers = r.headers().clone();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("Sign-in refused"), "{body}");
        assert!(
            cookie_set_by(&headers, "cairn_session").is_none()
                && cookie_set_by(&headers, "cairn_account").is_none(),
            "a refusal sets no session cookie"
        );
        let audit = self.audit();
        let last = audit.first().expect("an audit entry");
        assert_eq!(last["action"], "sso_sign_in_refused", "{last}");
        assert_eq!(last["changes"]["reason"], reason, "{last}");
        assert!(
            !last.to_string().contains("Signature"),
            "the audit log holds no assertion"
        );
    }
}

fn session_cookie(r: &reqwest::Response, name: &str) -> String {
    cookie_set_by(r.headers(), name).unwrap_or_else(|| panic!("{name} cookie"))
}

fn have_pysaml2() -> bool {
    Command::new("python3")
        .args(["-c", "import saml2.server"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// pysaml2's identity provider (a real one, not ours) answers Cairn's AuthnRequest for
/// each of an administrator and a backup user; both land where they should.
#[tokio::test]
async fn a_real_identity_provider_signs_in_an_administrator_and_a_backup_user() {
    if !tools()
        || !require(
            "pysaml2 from requirements-dev.txt (python3 -c 'import saml2')",
            have_pysaml2(),
        )
    {
        return;
    }
    let sso = Sso::start().await;
    let sp_metadata = sso
        .app
        .get(&format!("/sso/{}/saml/metadata", sso.tenant.id))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sp_file = sso.dir.path().join("sp-metadata.xml");
    std::fs::write(&sp_file, sp_metadata).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/idp/pysaml2_idp.py");
    for (user, cookie_name, page) in [
        (ADMIN, "cairn_session", "/accounts"),
        (BACKUP, "cairn_account", "/me"),
    ] {
        let redirect = sso.login_redirect().await;
        let out = Command::new("python3")
            .arg(script)
            .args([
                "--entity-id",
                IDP,
                "--sso-url",
                "https://idp.example.test/sso",
            ])
            .arg("--key")
            .arg(&sso.idp.key)
            .arg("--cert")
            .arg(&sso.idp.cert)
            .arg("--sp-metadata")
            .arg(&sp_file)
            .args(["--redirect", &redirect, "--user", user])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pysaml2 IdP: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(answer["acs"], sso.acs.as_str());
        let r = sso
            .app
            .client
            .post(sso.acs.as_str())
            .header(header::ORIGIN, "https://idp.example.test")
            .form(&[
                ("SAMLResponse", answer["SAMLResponse"].as_str().unwrap()),
                ("RelayState", answer["RelayState"].as_str().unwrap()),
            ])
            .send()
            .await
            .unwrap();
        let status = r.status();
        let cookie = cookie_set_by(r.headers(), cookie_name);
        assert_eq!(status, 200, "{user}: {}", r.text().await.unwrap());
        let page = sso
            .app
            .get(page)
            .header(header::COOKIE, cookie.expect("session cookie"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains(user));
        assert_eq!(sso.audit()[0]["action"], "sso_sign_in");
    }
}

#[tokio::test]
async fn saml_sign_in_of_an_administrator_opens_the_dashboard() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    // The SP metadata names our entity id and ACS.
    let md = sso
        .app
        .get(&format!("/sso/{}/saml/metadata", sso.tenant.id))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        md.contains(&format!("entityID=\"{}\"", sso.entity_id)),
        "{md}"
    );
    assert!(md.contains(&format!("Location=\"{}\"", sso.acs)), "{md}");

    let id = sso.login().await;
    // Any letter case of the administrator's email matches.
    let a = Assertion::new(&sso, &id, "Ada@ACME.test");
    let r = sso.post(&a.signed(sso.dir.path(), &sso.idp)).await;
    assert_eq!(r.status(), 200);
    let cookie = session_cookie(&r, "cairn_session");
    assert!(r.text().await.unwrap().contains("url=/accounts"));
    let page = sso
        .app
        .get("/accounts")
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(ADMIN) && html.contains(BACKUP), "{html}");
    let audit = sso.audit();
    assert_eq!(audit[0]["action"], "sso_sign_in");
    assert_eq!(audit[0]["target_name"], ADMIN);
}

#[tokio::test]
async fn saml_sign_in_of_a_backup_account_shows_only_its_own_page() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    let id = sso.login().await;
    let a = Assertion::new(&sso, &id, "BOB@acme.test");
    let r = sso.post(&a.signed(sso.dir.path(), &sso.idp)).await;
    assert_eq!(r.status(), 200);
    assert!(cookie_set_by(r.headers(), "cairn_session").is_none_or(|c| c.ends_with('=')));
    let cookie = session_cookie(&r, "cairn_account");
    let page = sso
        .app
        .get("/me")
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(BACKUP), "{html}");
    assert!(html.contains("Active"), "status: {html}");
    assert!(html.contains("class=\"quota\">50"), "quota: {html}");
    assert!(html.contains("class=\"used\">"), "used space: {html}");
    assert!(
        html.contains(&format!("/backup/{}/", sso.tenant.id)),
        "repository URL: {html}"
    );
    // The account's session is no dashboard session: a signed-in backup user is
    // refused there (403), not sent to sign in again.
    let dash = sso
        .app
        .get("/accounts")
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(dash.status(), 403);
    assert_eq!(sso.audit()[0]["action"], "sso_sign_in");
}

#[tokio::test]
async fn unsigned_responses_are_refused() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    let id = sso.login().await;
    let a = Assertion::new(&sso, &id, ADMIN);
    let r = sso.post(&a.unsigned()).await;
    sso.assert_refused(r, "signature missing or not by the configured certificate")
        .await;
    // The request id was not used up by the forgery: the real answer still works.
    let r = sso.post(&a.signed(sso.dir.path(), &sso.idp)).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn responses_signed_by_another_key_are_refused() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    let id = sso.login().await;
    let a = Assertion::new(&sso, &id, ADMIN);
    let r = sso.post(&a.signed(sso.dir.path(), &sso.attacker)).await;
    sso.assert_refused(r, "signature missing or not by the configured certificate")
        .await;
}

#[tokio::test]
async fn wrapped_signatures_are_refused() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    let id = sso.login().await;
    // The attacker holds a genuine signed assertion for their own account (bob) and
    // wraps it: an unsigned assertion naming the administrator comes first, the signed
    // one moves into Extensions where a careless SP would not look (XSW, "On Breaking
    // SAML", USENIX Security 2012).
    let genuine = Assertion::new(&sso, &id, BACKUP);
    let signed = sign(
        sso.dir.path(),
        &sso.idp,
        &genuine.response_xml(&genuine.assertion_xml(true)),
    );
    let signed_assertion = {
        let start = signed.find("<saml:Assertion").unwrap();
        let end = signed.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
        signed[start..end].to_owned()
    };
    let mut evil = genuine.clone();
    evil.name_id = ADMIN.into();
    evil.id = format!("_evil{}", rand_hex());
    // (Extensions belongs before Status in the schema; the order does not matter to the
    // attack, only which element a careless SP reads.)
    let wrapped = genuine.response_xml(&format!(
        "{}<samlp:Extensions>{signed_assertion}</samlp:Extensions>",
        evil.assertion_xml(false)
    ));
    let r = sso.post(&wrapped).await;
    let status = r.status();
    assert!(cookie_set_by(r.headers(), "cairn_session").is_none());
    assert_eq!(status, 403);
    let audit = sso.audit();
    assert_eq!(audit[0]["action"], "sso_sign_in_refused");
    // Only bob's assertion is signed. samael alone reads only that one (with the
    // document-level check below switched off, this response signs bob in, never the
    // administrator); Cairn refuses a wrapped document as a whole.
    assert_eq!(audit[0]["changes"]["reason"], "more than one assertion");
    assert!(
        !audit.iter().any(|e| e["action"] == "sso_sign_in"),
        "nobody signed in"
    );

    // Second form: the evil assertion carries the genuine signature (whose Reference
    // points at the genuine assertion's ID, now hidden inside the evil one's Subject).
    let id = sso.login().await;
    let genuine = Assertion::new(&sso, &id, BACKUP);
    let signed = sign(
        sso.dir.path(),
        &sso.idp,
        &genuine.response_xml(&genuine.assertion_xml(true)),
    );
    let start = signed.find("<saml:Assertion").unwrap();
    let end = signed.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    let signed_assertion = &signed[start..end];
    let mut evil = genuine.clone();
    evil.name_id = ADMIN.into();
    evil.id = format!("_evil{}", rand_hex());
    let evil_xml = evil.assertion_xml(false).replace(
        "</saml:Subject>",
        &format!("</saml:Subject><saml:Advice>{signed_assertion}</saml:Advice>"),
    );
    let r = sso.post(&genuine.response_xml(&evil_xml)).await;
    assert_eq!(r.status(), 403);
    assert!(cookie_set_by(r.headers(), "cairn_session").is_none());
    let audit = sso.audit();
    assert_eq!(audit[0]["changes"]["reason"], "more than one assertion");
    assert!(!audit.iter().any(|e| e["action"] == "sso_sign_in"));
}

#[tokio::test]
async fn replayed_assertions_are_refused() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    let first = sso.login().await;
    let second = sso.login().await;
    let a = Assertion::new(&sso, &first, ADMIN);
    let signed = a.signed(sso.dir.path(), &sso.idp);
    assert_eq!(sso.post(&signed).await.status(), 200);
    // The same response again: its request id is used up.
    let r = sso.post(&signed).await;
    sso.assert_refused(r, "unsolicited or unknown InResponseTo")
        .await;
    // The same assertion id answering another outstanding request: the replay store.
    let mut again = a.clone();
    again.in_response_to = Some(second);
    let r = sso.post(&again.signed(sso.dir.path(), &sso.idp)).await;
    sso.assert_refused(r, "assertion already used (replay)")
        .await;
}

#[tokio::test]
async fn wrong_audience_recipient_and_expired_assertions_are_refused() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    let dir = sso.dir.path();

    let id = sso.login().await;
    let mut a = Assertion::new(&sso, &id, ADMIN);
    a.audience = "https://someone-else.test/sp".into();
    sso.assert_refused(sso.post(&a.signed(dir, &sso.idp)).await, "wrong Audience")
        .await;

    let id = sso.login().await;
    let mut a = Assertion::new(&sso, &id, ADMIN);
    a.recipient = format!("{}/sso/{}/saml/acs", sso.app.base, sso.other.id);
    sso.assert_refused(sso.post(&a.signed(dir, &sso.idp)).await, "wrong Recipient")
        .await;

    let id = sso.login().await;
    let mut a = Assertion::new(&sso, &id, ADMIN);
    let long_ago = OffsetDateTime::now_utc() - Duration::hours(1);
    a.issue_instant = long_ago;
    a.not_before = long_ago - Duration::minutes(1);
    a.not_on_or_after = long_ago + Duration::minutes(5);
    sso.assert_refused(sso.post(&a.signed(dir, &sso.idp)).await, "expired")
        .await;

    // A wrong Destination on the response.
    let id = sso.login().await;
    let mut a = Assertion::new(&sso, &id, ADMIN);
    a.destination = "https://evil.test/acs".into();
    sso.assert_refused(
        sso.post(&a.signed(dir, &sso.idp)).await,
        "wrong Destination",
    )
    .await;
}

#[tokio::test]
async fn unsolicited_responses_are_refused() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    let dir = sso.dir.path();
    // IdP-initiated (no InResponseTo), with a request outstanding.
    let id = sso.login().await;
    let mut a = Assertion::new(&sso, &id, ADMIN);
    a.in_response_to = None;
    sso.assert_refused(
        sso.post(&a.signed(dir, &sso.idp)).await,
        "unsolicited or unknown InResponseTo",
    )
    .await;
    // An id we never issued.
    let a = Assertion::new(&sso, "_never-issued", ADMIN);
    sso.assert_refused(
        sso.post(&a.signed(dir, &sso.idp)).await,
        "unsolicited or unknown InResponseTo",
    )
    .await;
}

#[tokio::test]
async fn assertions_for_another_tenants_account_are_refused() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    let id = sso.login().await;
    // acme's identity provider asserts globex's user: no match inside acme.
    let a = Assertion::new(&sso, &id, "carol@globex.test");
    sso.assert_refused(
        sso.post(&a.signed(sso.dir.path(), &sso.idp)).await,
        "no dashboard administrator or account of the tenant matches",
    )
    .await;
    // And globex, which has no single sign-on, takes no response at all.
    let id = sso.login().await;
    let a = Assertion::new(&sso, &id, "carol@globex.test");
    let r = sso
        .post_to(&sso.other.id, &a.signed(sso.dir.path(), &sso.idp))
        .await;
    assert_eq!(r.status(), 404);
    assert!(cookie_set_by(r.headers(), "cairn_account").is_none());
}

#[tokio::test]
async fn suspended_accounts_are_refused() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    // Signed in before the suspension: the open session ends with it.
    let id = sso.login().await;
    let a = Assertion::new(&sso, &id, BACKUP);
    let r = sso.post(&a.signed(sso.dir.path(), &sso.idp)).await;
    let open = session_cookie(&r, "cairn_account");
    let me = |cookie: String| sso.app.get("/me").header(header::COOKIE, cookie).send();
    assert_eq!(me(open.clone()).await.unwrap().status(), 200);
    let list = sso
        .tenant
        .get(&format!("/Users?filter=userName eq \"{BACKUP}\""))
        .await
        .json();
    let uid = list["Resources"][0]["id"].as_str().unwrap().to_owned();
    let r = sso
        .tenant
        .patch(
            &format!("/Users/{uid}"),
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        me(open).await.unwrap().status(),
        401,
        "the open session ended"
    );
    let id = sso.login().await;
    let a = Assertion::new(&sso, &id, BACKUP);
    sso.assert_refused(
        sso.post(&a.signed(sso.dir.path(), &sso.idp)).await,
        "account is suspended",
    )
    .await;
}

#[tokio::test]
async fn accounts_outside_the_sso_scope_and_disabled_sso_are_refused() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    // Only the administrators and one listed account are in scope.
    sso.app
        .cli(&[
            "sso",
            "scope",
            "--tenant",
            &sso.tenant.id,
            "--admins",
            "--accounts",
            "someone@acme.test",
        ])
        .ok();
    let id = sso.login().await;
    let a = Assertion::new(&sso, &id, BACKUP);
    sso.assert_refused(
        sso.post(&a.signed(sso.dir.path(), &sso.idp)).await,
        "account is not in the SSO scope",
    )
    .await;
    // Listed by name (any letter case): in scope.
    sso.app
        .cli(&[
            "sso",
            "scope",
            "--tenant",
            &sso.tenant.id,
            "--accounts",
            "x@acme.test;BOB@acme.test",
        ])
        .ok();
    let id = sso.login().await;
    let a = Assertion::new(&sso, &id, BACKUP);
    assert_eq!(
        sso.post(&a.signed(sso.dir.path(), &sso.idp)).await.status(),
        200
    );
    // SSO turned off: no sign-in starts, and an answer to an earlier one is not taken.
    let id = sso.login().await;
    sso.app
        .cli(&["sso", "disable", "--tenant", &sso.tenant.id])
        .ok();
    let r = sso
        .app
        .get(&format!("/sso/{}/login", sso.tenant.id))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let a = Assertion::new(&sso, &id, BACKUP);
    let r = sso.post(&a.signed(sso.dir.path(), &sso.idp)).await;
    assert_eq!(r.status(), 404);
    assert!(cookie_set_by(r.headers(), "cairn_account").is_none());
}

// Dashboard roles from the identity provider's groups (issue 17, item 5).

impl Sso {
    /// The SCIM id of the backup account BACKUP.
    async fn backup_id(&self) -> String {
        let list = self
            .tenant
            .get(&format!("/Users?filter=userName eq \"{BACKUP}\""))
            .await
            .json();
        list["Resources"][0]["id"].as_str().unwrap().to_owned()
    }

    /// A SCIM group with BACKUP as its member, mapped to `role` with `cairn sso role`.
    async fn mapped_group(&self, name: &str, role: &str) -> String {
        let uid = self.backup_id().await;
        let r = self
            .tenant
            .post(
                "/Groups",
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": name, "members": [{"value": uid}]}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let gid = r.json()["id"].as_str().unwrap().to_owned();
        self.app
            .cli(&[
                "sso",
                "role",
                "--tenant",
                &self.tenant.id,
                "--group",
                name,
                "--role",
                role,
            ])
            .ok();
        gid
    }

    /// Signs BACKUP in through the identity provider; the response.
    async fn sign_in_backup(&self) -> reqwest::Response {
        let id = self.login().await;
        let a = Assertion::new(self, &id, BACKUP);
        self.post(&a.signed(self.dir.path(), &self.idp)).await
    }

    async fn page(&self, path: &str, cookie: &str) -> reqwest::Response {
        self.app
            .get(path)
            .header(header::COOKIE, cookie)
            .send()
            .await
            .unwrap()
    }
}

/// Only administrators get the Save button of Settings → Single Sign-On.
const SAVE_BUTTON: &str = r#"<button type="submit" class="primary">Save</button>"#;

#[tokio::test]
async fn a_group_mapped_administrator_loses_the_role_when_scim_removes_them() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    // The account is outside the account scope: the mapping alone grants the role.
    sso.app
        .cli(&["sso", "scope", "--tenant", &sso.tenant.id, "--admins"])
        .ok();
    let gid = sso.mapped_group("Cairn Admins", "administrator").await;
    let show = sso
        .app
        .cli(&["sso", "show", "--tenant", &sso.tenant.id, "--json"])
        .ok()
        .json();
    assert_eq!(show["group_roles"][0]["display_name"], "Cairn Admins");
    assert_eq!(show["group_roles"][0]["role"], "administrator");

    let r = sso.sign_in_backup().await;
    assert_eq!(r.status(), 200);
    let cookie = session_cookie(&r, "cairn_session");
    let page = sso.page("/accounts", &cookie).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(BACKUP), "{html}");
    let settings = sso
        .page("/settings/sso", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(settings.contains(SAVE_BUTTON), "administrator: {settings}");
    let audit = sso.audit();
    assert_eq!(audit[0]["action"], "sso_sign_in", "{}", audit[0]);
    assert_eq!(audit[0]["changes"]["role"], "administrator");
    assert_eq!(audit[0]["changes"]["dashboard_user_created"], true);
    // The dashboard user single sign-on made has no password.
    for password in ["", "correct horse battery staple"] {
        let login = sso.app.get("/login").send().await.unwrap();
        let login_cookie = cookie_set_by(login.headers(), "cairn_login").unwrap();
        let csrf = csrf_of(&login.text().await.unwrap());
        let pw = sso
            .app
            .client
            .post(format!("{}/login", sso.app.base))
            .header(header::ORIGIN, &sso.app.base)
            .header(header::COOKIE, login_cookie)
            .form(&[("email", BACKUP), ("password", password), ("csrf", &csrf)])
            .send()
            .await
            .unwrap();
        assert_ne!(pw.status(), 303, "no password sign-in");
        assert!(cookie_set_by(pw.headers(), "cairn_session").is_none_or(|c| c.ends_with('=')));
    }

    // The identity provider removes the account from the group over SCIM.
    let uid = sso.backup_id().await;
    let r = sso
        .tenant
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}]}),
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    let page = sso.page("/accounts", &cookie).await;
    assert_eq!(page.status(), 303, "the next request has no dashboard role");
    let audit = sso.audit();
    assert_eq!(audit[0]["action"], "sso_session_ended", "{}", audit[0]);
    // Signing in again gives no dashboard role (the account is not in the scope either).
    let id = sso.login().await;
    let a = Assertion::new(&sso, &id, BACKUP);
    sso.assert_refused(
        sso.post(&a.signed(sso.dir.path(), &sso.idp)).await,
        "account is not in the SSO scope",
    )
    .await;
}

#[tokio::test]
async fn a_group_mapped_viewer_gets_a_read_only_dashboard() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    sso.mapped_group("Cairn Viewers", "viewer").await;
    let r = sso.sign_in_backup().await;
    assert_eq!(r.status(), 200);
    let cookie = session_cookie(&r, "cairn_session");
    assert_eq!(sso.page("/accounts", &cookie).await.status(), 200);
    let settings = sso
        .page("/settings/sso", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(!settings.contains(SAVE_BUTTON), "viewer: {settings}");
    assert_eq!(sso.audit()[0]["changes"]["role"], "viewer");

    // Mapped to administrator now: the open session has the new role at once.
    sso.app
        .cli(&[
            "sso",
            "role",
            "--tenant",
            &sso.tenant.id,
            "--group",
            "cairn viewers",
            "--role",
            "administrator",
        ])
        .ok();
    let settings = sso
        .page("/settings/sso", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(settings.contains(SAVE_BUTTON), "administrator: {settings}");
    // Mapping removed: the session ends.
    sso.app
        .cli(&[
            "sso",
            "role",
            "--tenant",
            &sso.tenant.id,
            "--group",
            "Cairn Viewers",
            "--role",
            "none",
        ])
        .ok();
    assert_eq!(sso.page("/accounts", &cookie).await.status(), 303);
    // An unknown group is an error, not a silent no-op.
    let unknown = sso.app.cli(&[
        "sso",
        "role",
        "--tenant",
        &sso.tenant.id,
        "--group",
        "nobody",
        "--role",
        "viewer",
    ]);
    assert!(!unknown.status.success(), "{unknown:?}");
}

#[tokio::test]
async fn a_member_of_no_mapped_group_gets_no_dashboard_role() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    // A group, but mapped to nothing.
    sso.mapped_group("Everyone", "none").await;
    let r = sso.sign_in_backup().await;
    assert_eq!(r.status(), 200);
    assert!(cookie_set_by(r.headers(), "cairn_session").is_none_or(|c| c.ends_with('=')));
    let cookie = session_cookie(&r, "cairn_account");
    assert_eq!(sso.page("/me", &cookie).await.status(), 200);
    // A backup account's session is refused the dashboard (not sent to sign in).
    assert_eq!(sso.page("/accounts", &cookie).await.status(), 403);
}

#[tokio::test]
async fn suspending_or_deleting_a_group_mapped_account_ends_its_dashboard_session() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    sso.mapped_group("Cairn Admins", "administrator").await;
    let uid = sso.backup_id().await;
    let r = sso.sign_in_backup().await;
    let cookie = session_cookie(&r, "cairn_session");
    assert_eq!(sso.page("/accounts", &cookie).await.status(), 200);
    let r = sso
        .tenant
        .patch(
            &format!("/Users/{uid}"),
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(sso.page("/accounts", &cookie).await.status(), 303);

    // Reactivated and signed in again, then deleted over SCIM.
    let r = sso
        .tenant
        .patch(
            &format!("/Users/{uid}"),
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": true}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = sso.sign_in_backup().await;
    let cookie = session_cookie(&r, "cairn_session");
    assert_eq!(sso.page("/accounts", &cookie).await.status(), 200);
    let r = sso.tenant.delete(&format!("/Users/{uid}")).await;
    assert_eq!(r.status, 204);
    assert_eq!(sso.page("/accounts", &cookie).await.status(), 303);
}

#[tokio::test]
async fn an_administrator_maps_a_group_on_the_settings_page() {
    if !tools() {
        return;
    }
    let sso = Sso::start().await;
    sso.mapped_group("Helpdesk", "none").await;
    let cookie = sso.app.sign_in(ADMIN, PASSWORD).await;
    let post = |group: &'static str, role: &'static str, csrf: String| {
        sso.app
            .client
            .post(format!("{}/settings/sso/roles", sso.app.base))
            .header(header::ORIGIN, &sso.app.base)
            .header(header::COOKIE, &cookie)
            .form(&[("group", group), ("role", role), ("csrf", &csrf)])
            .send()
    };
    let page = sso
        .page("/settings/sso", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("No group is mapped"), "{page}");
    let csrf = csrf_of(&page);
    let r = post("helpdesk", "viewer", csrf.clone()).await.unwrap();
    assert_eq!(r.status(), 303);
    let page = sso
        .page("/settings/sso", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("<td>Helpdesk</td><td>viewer</td>"), "{page}");
    let r = post("no such group", "viewer", csrf.clone()).await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(sso.audit()[0]["target_name"], "Helpdesk");
    // The member signs in as a viewer.
    let r = sso.sign_in_backup().await;
    let viewer = session_cookie(&r, "cairn_session");
    let settings = sso
        .page("/settings/sso", &viewer)
        .await
        .text()
        .await
        .unwrap();
    assert!(!settings.contains(SAVE_BUTTON));
    // A viewer cannot map groups.
    let vcsrf = csrf_of(&settings);
    let r = sso
        .app
        .client
        .post(format!("{}/settings/sso/roles", sso.app.base))
        .header(header::ORIGIN, &sso.app.base)
        .header(header::COOKIE, &viewer)
        .form(&[
            ("group", "Helpdesk"),
            ("role", "administrator"),
            ("csrf", &vcsrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

// --- sso-idp: the identity provider's metadata by URL, refreshed on a schedule ---

/// The test IdP's metadata with one signing certificate.
fn idp_metadata(cert: &str) -> String {
    format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{IDP}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.test/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
    )
}

/// A plain HTTP server on 127.0.0.1 answering every request with the status and body
/// in `served` (what the identity provider publishes at its metadata URL). On its own
/// thread: the test's runtime is blocked while a CLI command runs.
fn metadata_server(served: std::sync::Arc<std::sync::Mutex<(u16, String)>>) -> u16 {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let (status, body) = served.lock().unwrap().clone();
            let mut buf = [0u8; 8192];
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

impl Sso {
    /// Waits (at most 20 s) for an audit entry with `action`, and returns the newest.
    async fn wait_for_audit(&self, action: &str) -> Value {
        for _ in 0..80 {
            if let Some(e) = self.audit().into_iter().find(|e| e["action"] == action) {
                return e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        panic!("no {action} in the audit log: {:?}", self.audit());
    }
}

#[tokio::test]
async fn a_metadata_url_is_refreshed_and_a_certificate_rollover_is_picked_up() {
    if !tools() {
        return;
    }
    let sso = Sso::start_with(vec![
        "--sso-allow-insecure-idp".into(),
        "--sso-metadata-refresh-secs".into(),
        "1".into(),
    ])
    .await;
    let served = std::sync::Arc::new(std::sync::Mutex::new((
        200u16,
        idp_metadata(&sso.idp.cert_b64()),
    )));
    let port = metadata_server(served.clone());
    let url = format!("http://127.0.0.1:{port}/idp/metadata");
    let saml = |extra: &[&str]| {
        let mut args = vec![
            "sso",
            "saml",
            "--tenant",
            &sso.tenant.id,
            "--metadata-url",
            &url,
        ];
        args.extend_from_slice(extra);
        sso.app.cli(&args.iter().map(|s| &**s).collect::<Vec<_>>())
    };

    // Without the operator's test flag: plain http to loopback is refused.
    let refused = saml(&[]);
    assert!(!refused.status.success());
    assert!(refused.stderr.contains("https"), "{}", refused.stderr);
    saml(&["--allow-insecure-idp"]).ok();
    let show = sso
        .app
        .cli(&["sso", "show", "--tenant", &sso.tenant.id, "--json"])
        .ok()
        .json();
    assert_eq!(show["saml"]["metadata_url"], url.as_str());

    let id = sso.login().await;
    let r = sso
        .post(&Assertion::new(&sso, &id, ADMIN).signed(sso.dir.path(), &sso.idp))
        .await;
    assert_eq!(r.status(), 200);

    // Rollover: the identity provider now publishes a new key (here `attacker`'s) and
    // signs with it. After the next refresh the new key is accepted, the old refused.
    served.lock().unwrap().1 = idp_metadata(&sso.attacker.cert_b64());
    let e = sso.wait_for_audit("sso_metadata_refreshed").await;
    assert_eq!(e["changes"]["certificates_changed"], true, "{e}");
    assert_eq!(e["actor_kind"], "system", "{e}");
    let id = sso.login().await;
    let r = sso
        .post(&Assertion::new(&sso, &id, ADMIN).signed(sso.dir.path(), &sso.attacker))
        .await;
    assert_eq!(r.status(), 200, "signed with the new key");
    let id = sso.login().await;
    let r = sso
        .post(&Assertion::new(&sso, &id, ADMIN).signed(sso.dir.path(), &sso.idp))
        .await;
    sso.assert_refused(r, "signature missing or not by the configured certificate")
        .await;

    // The identity provider fails: audited, and the last good settings stay.
    served.lock().unwrap().0 = 500;
    let e = sso.wait_for_audit("sso_metadata_refresh_failed").await;
    assert!(
        e["changes"]["reason"].as_str().unwrap().contains("500"),
        "{e}"
    );
    let id = sso.login().await;
    let r = sso
        .post(&Assertion::new(&sso, &id, ADMIN).signed(sso.dir.path(), &sso.attacker))
        .await;
    assert_eq!(r.status(), 200, "the last good certificate still works");
}

#[tokio::test]
async fn an_administrator_sets_a_metadata_url_on_the_settings_page() {
    if !tools() {
        return;
    }
    let sso = Sso::start_with(vec!["--sso-allow-insecure-idp".into()]).await;
    // The identity provider behind the URL signs with another key than the one set from
    // the file at start.
    let served = std::sync::Arc::new(std::sync::Mutex::new((
        200u16,
        idp_metadata(&sso.attacker.cert_b64()),
    )));
    let url = format!("http://127.0.0.1:{}/md", metadata_server(served));
    let cookie = sso.app.sign_in(ADMIN, PASSWORD).await;
    let page = sso
        .page("/settings/sso", &cookie)
        .await
        .text()
        .await
        .unwrap();
    let r = sso
        .app
        .client
        .post(format!("{}/settings/sso", sso.app.base))
        .header(header::ORIGIN, &sso.app.base)
        .header(header::COOKIE, &cookie)
        .form(&[
            ("csrf", csrf_of(&page).as_str()),
            ("enabled", "on"),
            ("scope_admins", "on"),
            ("metadata_url", url.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let page = sso
        .page("/settings/sso", &cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("value=\"{url}\"")), "{page}");
    let audit = sso.audit();
    assert_eq!(audit[0]["action"], "sso_settings_changed");
    assert_eq!(audit[0]["changes"]["metadata_url"], url.as_str());
    let id = sso.login().await;
    let r = sso
        .post(&Assertion::new(&sso, &id, ADMIN).signed(sso.dir.path(), &sso.attacker))
        .await;
    assert_eq!(r.status(), 200, "the key from the URL's metadata");
    let id = sso.login().await;
    let r = sso
        .post(&Assertion::new(&sso, &id, ADMIN).signed(sso.dir.path(), &sso.idp))
        .await;
    sso.assert_refused(r, "signature missing or not by the configured certificate")
        .await;
}
// --- end sso-idp ---
