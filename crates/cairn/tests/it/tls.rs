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
    // TLS 1.1 and 1.0 are refused (the client's own floor lowered so the server decides).
    for max in ["1.1", "1.0"] {
        let out = curl(
            &cert,
            &["--tls-max", max, "--ciphers", "DEFAULT@SECLEVEL=0"],
            &healthz,
        );
        assert!(!out.status.success(), "TLS {max} was accepted");
    }
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .arg(healthz.replacen("https://", "http://", 1))
        .output()
        .unwrap();
    assert_ne!(body_and_status(&plain).1, 200);

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
