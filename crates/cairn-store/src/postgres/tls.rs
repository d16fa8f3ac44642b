//! TLS to PostgreSQL with rustls (ring provider, no OpenSSL): libpq's `sslmode` and
//! `sslrootcert` parameters of the database URL, with libpq's meanings
//! (<https://www.postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-PROTECTION>):
//!
//! | `sslmode`   | encrypted            | certificate checked                         |
//! |-------------|----------------------|---------------------------------------------|
//! | disable     | never                | —                                           |
//! | prefer      | when the server can  | no (chain only with `sslrootcert=FILE`)     |
//! | require     | always               | no (chain only with `sslrootcert=FILE`)     |
//! | verify-ca   | always               | chain to a trusted root                     |
//! | verify-full | always               | chain, and the host name (or IP) of the URL |
//!
//! Trusted roots: the PEM file `sslrootcert=FILE`, else the system's store
//! (`sslrootcert=system`, or no `sslrootcert` with verify-ca/verify-full). As in libpq,
//! `sslrootcert=system` makes `verify-full` the default and refuses weaker modes
//! (libpq-connect, "sslrootcert"). Without `sslmode` the mode is `prefer`, libpq's default.
//!
//! tokio-postgres itself knows only disable/prefer/require and no `sslrootcert`, so both
//! parameters are taken out of the URL here and become the rustls client configuration.

use cairn_core::{Error, Result};
use std::sync::Arc;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// libpq's `sslmode` values, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's `allow` (plain text first, TLS only if the server insists) is not
            // offered: it tries the unencrypted connection before the encrypted one.
            other => {
                return Err(invalid(format!(
                    "sslmode={other}: expected disable, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }
}

/// Where trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    File(String),
    System,
}

/// A database URL ready to connect: tokio-postgres's configuration (with `sslmode` and
/// `sslrootcert` taken out) and the TLS connector they asked for.
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub mode: SslMode,
}

fn invalid(reason: String) -> Error {
    Error::Invalid {
        field: "database-url",
        reason,
    }
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query, keeping every
/// other parameter exactly as written.
fn split_params(url: &str) -> Result<(String, Option<SslMode>, Option<Roots>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None, None));
    };
    let (mut mode, mut roots) = (None, None);
    let mut kept = Vec::new();
    for part in query.split('&') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| invalid(format!("parameter {k}: not UTF-8 after percent-decoding")))
        };
        match decode(k)?.as_str() {
            "sslmode" => mode = Some(SslMode::parse(&decode(v)?)?),
            "sslrootcert" => {
                let v = decode(v)?;
                roots = Some(match v.as_str() {
                    "" => return Err(invalid("sslrootcert: empty file name".into())),
                    "system" => Roots::System,
                    _ => Roots::File(v),
                });
            }
            // Client certificates are not supported: say so rather than connect without.
            key @ ("sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir") => {
                return Err(invalid(format!("{key} is not supported")))
            }
            _ => kept.push(part),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, mode, roots))
}

/// tokio-postgres's view of a `postgres://` URL (host, database, user…), the TLS
/// parameters set aside; no file is read.
pub fn config(url: &str) -> Result<tokio_postgres::Config> {
    let (rest, _, _) = split_params(url)?;
    rest.parse().map_err(|e| invalid(format!("{e}")))
}

/// Parses a `postgres://` URL with libpq's TLS parameters, reading the trusted roots.
pub fn target(url: &str) -> Result<Target> {
    let (rest, mode, roots) = split_params(url)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| invalid(format!("{e}")))?;
    let mode = match (mode, &roots) {
        (None, Some(Roots::System)) => SslMode::VerifyFull,
        (Some(m), Some(Roots::System)) if m != SslMode::VerifyFull => {
            return Err(invalid(
                "sslrootcert=system needs sslmode=verify-full (as in libpq)".into(),
            ))
        }
        (None, _) => SslMode::Prefer,
        (Some(m), _) => m,
    };
    config.ssl_mode(match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
    });
    let provider = Arc::new(crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, &roots) {
        (SslMode::VerifyFull, _) => web_pki(&provider, roots.as_ref())?,
        (SslMode::VerifyCa, _) | (SslMode::Prefer | SslMode::Require, Some(Roots::File(_))) => {
            // libpq: "if a root CA file exists, [require] will verify the certificate in
            // the same way as if verify-ca was specified".
            Arc::new(ChainOnly(web_pki(&provider, roots.as_ref())?))
        }
        _ => Arc::new(Unverified(provider.clone())),
    };
    let tls_config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Internal(format!("TLS protocol versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Target {
        config,
        tls: MakeRustlsConnect::new(tls_config),
        mode,
    })
}

fn load_roots(roots: Option<&Roots>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match roots {
        Some(Roots::File(path)) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| invalid(format!("sslrootcert={path}: {e}")))?;
            if certs.is_empty() {
                return Err(invalid(format!(
                    "sslrootcert={path}: no certificate (BEGIN CERTIFICATE) in the file"
                )));
            }
            for c in certs {
                store
                    .add(c)
                    .map_err(|e| invalid(format!("sslrootcert={path}: {e}")))?;
            }
        }
        Some(Roots::System) | None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(invalid(
                    "no trusted root certificates in the system's store: name the server's \
                     CA with sslrootcert=FILE"
                        .into(),
                ));
            }
        }
    }
    Ok(store)
}

fn web_pki(
    provider: &Arc<CryptoProvider>,
    roots: Option<&Roots>,
) -> Result<Arc<WebPkiServerVerifier>> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(load_roots(roots)?), provider.clone())
        .build()
        .map_err(|e| invalid(format!("trusted roots: {e}")))
}

/// `verify-ca`: the chain must lead to a trusted root; the name in the certificate is not
/// compared with the host. rustls checks the chain before the name
/// (`WebPkiServerVerifier::verify_server_cert`), so a name error means the chain passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`/`require` without a root file: encrypted against passive listeners only, as
/// in libpq. The handshake signatures are still checked, so the key exchange is bound to
/// the certificate the server presented.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_leave_the_url_and_others_stay_as_written() {
        let (url, mode, roots) = split_params(
            "postgres://u:p%40ss@db:5432/cairn?application_name=a%20b&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:p%40ss@db:5432/cairn?application_name=a%20b&connect_timeout=5"
        );
        assert_eq!(mode, Some(SslMode::VerifyFull));
        assert_eq!(roots, Some(Roots::File("/etc/ca.pem".into())));
        let (url, mode, roots) = split_params("postgres://db/cairn?sslmode=require").unwrap();
        assert_eq!(
            (url.as_str(), mode, roots),
            ("postgres://db/cairn", Some(SslMode::Require), None)
        );
    }

    #[test]
    fn modes_follow_libpq() {
        assert_eq!(target("postgres://db/c").unwrap().mode, SslMode::Prefer);
        assert_eq!(
            target("postgres://db/c?sslmode=disable")
                .unwrap()
                .config
                .get_ssl_mode(),
            PgSslMode::Disable
        );
        let t = target("postgres://db/c?sslmode=verify-ca&sslrootcert=system");
        assert!(
            matches!(&t, Err(Error::Invalid { reason, .. }) if reason.contains("verify-full")),
            "{:?}",
            t.err()
        );
        for bad in [
            "sslmode=allow",
            "sslmode=VERIFY-FULL",
            "sslcert=/c.pem",
            "sslrootcert=",
        ] {
            assert!(
                matches!(
                    target(&format!("postgres://db/c?{bad}")),
                    Err(Error::Invalid { .. })
                ),
                "{bad}"
            );
        }
        let missing = target("postgres://db/c?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
        assert!(
            matches!(&missing, Err(Error::Invalid { reason, .. }) if reason.contains("/nonexistent/ca.pem")),
            "{:?}",
            missing.err()
        );
    }
}
