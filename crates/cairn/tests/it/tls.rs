//! HTTPS (`--tls-cert`/`--tls-key`) with a self-signed certificate made by the `openssl`
//! CLI, spoken to by `curl` (the workspace's reqwest is built without TLS): TLS 1.2 and
//! 1.3 are served, older versions and plain HTTP are refused, SCIM works over it, SIGTERM
//! still exits cleanly, and unusable certificate options stop `serve` with a message.

use crate::support::*;
use std::path::Path;
use std::process::{Command, Output};

/// `curl -sS --cacert CERT EXTRA… URL`, printing the status code after the body.
fn curl(cert: &Path, extra: &[&str], url: &str) -> Output {
    Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(cert)
        .args(extra)
        .arg(url)
        .output()
        .expect("curl is needed to speak TLS to the server")
}

fn body_and_status(out: &Output) -> (String, u16) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (body.to_owned(), code.trim().parse().unwrap_or(0))
}

#[tokio::test]
async fn https_with_tls_1_2_and_1_3_only_and_a_clean_sigterm() {
    let deployment = std::sync::Arc::new(Deployment::new());
    let (cert, key) = self_signed(deployment.data_dir.path());
    let mut app = TestApp::spawn_on(
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
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    let healthz = format!("{}/healthz", app.base);

    for version in [
        ["--tlsv1.2", "--tls-max", "1.2"],
        ["--tlsv1.3", "--tls-max", "1.3"],
    ] {
        let out = curl(&cert, &version, &healthz);
        assert!(
            out.status.success(),
            "{version:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(body_and_status(&out).1, 200, "{version:?}");
    }
    // TLS 1.1 and 1.0 are refused by the server: the client's own floor lowered (and its
    // cipher policy, so OpenSSL sends the hello at all), the server answers with a fatal
    // alert (RFC 8446 §6.2) that curl reports as received ("… alert …"), not with a local
    // failure such as "no protocols available" or a refused connection.
    for max in ["1.1", "1.0"] {
        let out = curl(
            &cert,
            &[
                "--tlsv1.0",
                "--tls-max",
                max,
                "--ciphers",
                "DEFAULT@SECLEVEL=0",
            ],
            &healthz,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        // curl's exit code 35: the TLS handshake failed.
        assert_eq!(out.status.code(), Some(35), "TLS {max}: {stderr}");
        assert!(
            stderr.contains("alert handshake failure") || stderr.contains("alert protocol version"),
            "TLS {max} was not refused by the server's alert: {stderr}"
        );
    }
    // Plain HTTP on the TLS port is answered with a TLS fatal alert record and the
    // connection closed (RFC 8446 §5.1: content type 21, alert; §6: level 2, fatal), no
    // HTTP answer at all.
    let addr = app.base.trim_start_matches("https://").to_owned();
    let reply = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        reply
    })
    .await
    .unwrap();
    assert!(
        reply.len() == 7
            && reply[0] == 21
            && reply[1] == 3
            && reply[3..5] == [0, 2]
            && reply[5] == 2,
        "not one TLS fatal alert: {reply:02x?} ({:?})",
        String::from_utf8_lossy(&reply)
    );

    // SCIM over HTTPS; the Tenant URL uses the https scheme.
    let t = app.tenant("Secure");
    assert!(t.url.starts_with("https://"), "{}", t.url);
    let out = curl(
        &cert,
        &["-H", &format!("Authorization: Bearer {}", t.token)],
        &format!("{}/Users?count=1", t.url),
    );
    let (body, status) = body_and_status(&out);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["totalResults"], 0);

    let status = app.terminate();
    assert!(status.success(), "{status:?}\n{}", app.log());
}

#[test]
fn unusable_certificate_options_stop_serve_with_a_message() {
    let deployment = Deployment::new();
    let dir = deployment.data_dir.path();
    let (cert, key) = self_signed(dir);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let garbage = garbage.display().to_string();
    let missing = dir.join("missing.pem").display().to_string();

    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        run_cli(&deployment, None, &args, None)
    };
    for (extra, expect) in [
        (vec!["--tls-cert", cert.as_str()], "--tls-key"),
        (vec!["--tls-key", key.as_str()], "--tls-cert"),
        (
            vec!["--tls-cert", missing.as_str(), "--tls-key", key.as_str()],
            "cannot read the TLS certificate",
        ),
        (
            vec!["--tls-cert", garbage.as_str(), "--tls-key", key.as_str()],
            "no certificate",
        ),
        (
            vec!["--tls-cert", cert.as_str(), "--tls-key", cert.as_str()],
            "private key",
        ),
        (
            vec!["--tls-cert", key.as_str(), "--tls-key", key.as_str()],
            "no certificate",
        ),
    ] {
        let out = serve(&extra);
        assert!(!out.status.success(), "{extra:?} started");
        assert!(out.stderr.contains(expect), "{extra:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}
