//! Request targets as Microsoft Entra ID's provisioning service sends them: spaces as
//! `+`, `@` percent-encoded, double quotes raw (`filter=userName+eq+"alice%40example.com"`),
//! which the `http` crate's URI parser refuses. Written byte for byte to a raw TCP socket
//! (and through TLS with rustls, no HTTP client library that could encode them), several
//! requests on one keep-alive connection with a POST body and a chunked body between
//! them, over HTTP and HTTPS; a head the HTTP layer still refuses is answered with a SCIM
//! error that says why. (Microsoft Learn, "Tutorial: Develop and plan provisioning for a
//! SCIM endpoint": the Test Connection query, the matching query before each create, and
//! the group probe with `excludedAttributes=members`.)

use crate::support::*;
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// One response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {} {}", self.status, self.body))
    }
}

/// Reads one response (Content-Length framed, as Cairn's are) from `s`, keeping what
/// follows it in `buf`.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Raw {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or_else(|| panic!("no Content-Length in {head}"));
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                buf.drain(..end + 4 + len);
                let status = head[9..12].parse().unwrap();
                return Raw { status, head, body };
            }
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(std::time::Duration::from_secs(20), s.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed; read so far: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Entra's conversation on one connection: the exact request lines with raw quotes,
/// a create between them, a chunked group create, two requests pipelined.
async fn entra_conversation<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, t: &Tenant) {
    let prefix = t
        .url
        .split_once("/scim/")
        .map(|(_, p)| format!("/scim/{p}"))
        .unwrap();
    let headers = format!(
        "Host: cairn.example\r\nAuthorization: Bearer {}\r\nAccept: application/scim+json\r\n\
         User-Agent: Azure-AD-Provisioning\r\n",
        t.token
    );
    let get = |query: &str| format!("GET {prefix}{query} HTTP/1.1\r\n{headers}\r\n").into_bytes();
    let mut buf = Vec::new();

    // Test Connection: a user that does not exist.
    s.write_all(&get(
        "/Users?filter=userName+eq+\"Test_User_dfeef4c5-5681-4387-b016-bdf221e82081\"",
    ))
    .await
    .unwrap();
    let r = read_response(s, &mut buf).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["totalResults"], 0);

    // The matching query before a create, the create (a body with quotes of its own),
    // the matching query again: all on the same connection.
    let matching = get("/Users?filter=userName+eq+\"alice%40example.com\"");
    s.write_all(&matching).await.unwrap();
    let r = read_response(s, &mut buf).await;
    assert_eq!(
        (r.status, r.json()["totalResults"].clone()),
        (200, 0.into()),
        "{r:?}"
    );
    let user = format!(
        r#"{{"schemas":["{USER_URN}"],"userName":"alice@example.com","active":true,"externalId":"GET /x?\"y\" HTTP/1.1","name":{{"givenName":"Alice","familyName":"Doe"}},"emails":[{{"primary":true,"type":"work","value":"alice@example.com"}}]}}"#
    );
    s.write_all(
        format!(
            "POST {prefix}/Users HTTP/1.1\r\n{headers}Content-Type: application/scim+json; \
             charset=utf-8\r\nContent-Length: {}\r\n\r\n{user}",
            user.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(s, &mut buf).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["externalId"], "GET /x?\"y\" HTTP/1.1");
    s.write_all(&matching).await.unwrap();
    let r = read_response(s, &mut buf).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["totalResults"], 1);
    assert_eq!(r.json()["Resources"][0]["userName"], "alice@example.com");

    // The group probe, a chunked create, and the probe and a user query pipelined.
    let probe = get("/Groups?excludedAttributes=members&filter=displayName+eq+\"Sales+{EU}\"");
    s.write_all(&probe).await.unwrap();
    let r = read_response(s, &mut buf).await;
    assert_eq!(
        (r.status, r.json()["totalResults"].clone()),
        (200, 0.into()),
        "{r:?}"
    );
    let group =
        r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Sales {EU}"}"#;
    let (a, b) = group.split_at(20);
    s.write_all(
        format!(
            "POST {prefix}/Groups HTTP/1.1\r\n{headers}Content-Type: application/scim+json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(s, &mut buf).await;
    assert_eq!(r.status, 201, "{r:?}");
    s.write_all(
        &[
            probe,
            get("/Users?filter=userName+eq+\"nobody%40example.com\""),
        ]
        .concat(),
    )
    .await
    .unwrap();
    let r = read_response(s, &mut buf).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["totalResults"], 1);
    assert_eq!(r.json()["Resources"][0]["displayName"], "Sales {EU}");
    assert!(r.json()["Resources"][0].get("members").is_none());
    let r = read_response(s, &mut buf).await;
    assert_eq!(
        (r.status, r.json()["totalResults"].clone()),
        (200, 0.into()),
        "{r:?}"
    );
}

/// A head the HTTP layer refuses (two Content-Lengths that differ) after a good request:
/// the good one is answered, then a 400 SCIM error saying why, and the connection closes.
async fn refused_with_a_reason<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, t: &Tenant) {
    let prefix = t
        .url
        .split_once("/scim/")
        .map(|(_, p)| format!("/scim/{p}"))
        .unwrap();
    let mut buf = Vec::new();
    s.write_all(
        format!(
            "GET {prefix}/Users?filter=userName+eq+\"a\" HTTP/1.1\r\nAuthorization: Bearer {tok}\r\n\r\n\
             POST {prefix}/Users HTTP/1.1\r\nAuthorization: Bearer {tok}\r\nContent-Length: 2\r\n\
             Content-Length: 3\r\n\r\n{{}}",
            tok = t.token
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(read_response(s, &mut buf).await.status, 200);
    let r = read_response(s, &mut buf).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["schemas"][0], ERROR_URN);
    assert_eq!(r.json()["status"], "400");
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("Content-Length"), "{detail}");
    assert!(
        r.head.to_ascii_lowercase().contains("connection: close"),
        "{}",
        r.head
    );
    let mut rest = Vec::new();
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection");
    assert!(
        n.is_err() || rest.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}

fn addr(app: &TestApp) -> String {
    app.base.split_once("://").unwrap().1.to_owned()
}

#[tokio::test]
async fn entra_raw_quotes_over_http_keep_alive() {
    let app = TestApp::spawn().await;
    let t = app.tenant("Raw targets");
    let mut s = TcpStream::connect(addr(&app)).await.unwrap();
    entra_conversation(&mut s, &t).await;
    let mut s = TcpStream::connect(addr(&app)).await.unwrap();
    refused_with_a_reason(&mut s, &t).await;
}

#[tokio::test]
async fn entra_raw_quotes_over_https_keep_alive() {
    let deployment = Arc::new(Deployment::new());
    let (cert, key) = self_signed(deployment.data_dir.path());
    let app = TestApp::spawn_on(
        deployment.clone(),
        Opts {
            args: vec![
                "--tls-cert".into(),
                cert.display().to_string(),
                "--tls-key".into(),
                key.display().to_string(),
            ],
            ..Default::default()
        },
    )
    .await;
    let t = app.tenant("Raw targets TLS");
    use rustls::pki_types::pem::PemObject;
    let pinned = rustls::pki_types::CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            cert: pinned,
            provider,
        }))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tcp = TcpStream::connect(addr(&app)).await.unwrap();
    let mut s = connector.connect(name.clone(), tcp).await.unwrap();
    entra_conversation(&mut s, &t).await;
    let tcp = TcpStream::connect(addr(&app)).await.unwrap();
    let mut s = connector.connect(name, tcp).await.unwrap();
    refused_with_a_reason(&mut s, &t).await;
}

/// Trusts exactly the test's self-signed certificate (webpki refuses it as a root:
/// `openssl req -x509` marks it a CA), with the handshake signatures still checked.
#[derive(Debug)]
struct Pinned {
    cert: rustls::pki_types::CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the test certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
