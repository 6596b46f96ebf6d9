//! TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` URL parameters ask, for a managed
//! server (RDS, Cloud SQL, Azure, ...) or any server with `ssl = on`.
//!
//! # Crates: rustls through tokio-postgres-rustls (not postgres-native-tls)
//! rustls is pure Rust (its `ring` provider compiles a little C and assembly with the C
//! compiler the bundled SQLite already needs), so the binary stays free of a system OpenSSL:
//! no libssl-dev at build time, no shared library to match at run time, static and musl builds
//! keep working. postgres-native-tls would link OpenSSL on Linux. tokio-postgres-rustls is the
//! small adapter between rustls and tokio-postgres (channel binding included).
//!
//! # Modes (libpq's meanings)
//! - `disable`: plain TCP. `allow`, `prefer` (libpq's default, and ours when the URL names no
//!   mode): TLS if the server offers it, else plain; the certificate is not checked.
//! - `require`: TLS or no connection; the certificate is not checked (as libpq, unless
//!   `sslrootcert` is given: then as `verify-ca`).
//! - `verify-ca`: TLS, the server's certificate must chain to a trusted root.
//! - `verify-full`: as `verify-ca`, and the certificate must name the host in the URL.
//!
//! Trusted roots: the PEM file `sslrootcert` names (a managed provider's CA bundle, e.g. RDS's
//! `global-bundle.pem`), else the operating system's store (`sslrootcert=system`, or no
//! `sslrootcert`), read with rustls-native-certs: what the operator installed there counts,
//! unlike a compiled-in list. tokio-postgres itself knows only disable/prefer/require, so
//! this module takes `sslmode` and `sslrootcert` out of the URL and sets its mode.

use super::StoreError;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::sync::Arc;
use tokio_postgres::config::SslMode;
pub use tokio_postgres_rustls::MakeRustlsConnect as Tls;

/// `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `disable`.
    Disable,
    /// `allow` / `prefer`.
    Prefer,
    /// `require`.
    Require,
    /// `verify-ca`.
    VerifyCa,
    /// `verify-full`.
    VerifyFull,
}

impl Mode {
    fn parse(v: &str) -> Result<Self, StoreError> {
        Ok(match v {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(StoreError::Internal(format!(
                    "--db: sslmode={other} is not one of disable, allow, prefer, require, \
                     verify-ca, verify-full"
                )));
            }
        })
    }

    /// For the startup log.
    pub fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// A `--db` URL (or libpq `key=value` string) parsed for tokio-postgres, with its connector.
pub struct Parsed {
    /// The driver's configuration (its `ssl_mode` set from `sslmode`).
    pub config: tokio_postgres::Config,
    /// The TLS connector every connection uses.
    pub tls: Tls,
    /// The mode asked for.
    pub mode: Mode,
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parsed")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Takes `name=value` out of `url`'s parameters (URL query or key=value words); the rest and
/// the values found.
fn take_params(url: &str, names: &[&str]) -> (String, Vec<Option<String>>) {
    let mut found = vec![None; names.len()];
    let mut pick = |kv: &str| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match names.iter().position(|n| *n == k) {
            Some(i) => {
                found[i] = Some(v.to_owned());
                false
            }
            None => true,
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query.split('&').filter(|kv| pick(kv)).collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_owned(),
        }
    } else {
        let kept: Vec<&str> = url.split_whitespace().filter(|kv| pick(kv)).collect();
        kept.join(" ")
    };
    (rest, found)
}

/// Parses `url` (see the module docs for `sslmode` / `sslrootcert`).
pub fn parse(url: &str, shown: &str) -> Result<Parsed, StoreError> {
    let (rest, found) = take_params(url, &["sslmode", "sslrootcert"]);
    let mode = found[0].as_deref().map_or(Ok(Mode::Prefer), Mode::parse)?;
    let rootcert = found[1].clone();
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| {
        StoreError::Internal(format!(
            "--db {shown} is not a PostgreSQL URL ({e}); use postgres://user:password@host:port/database"
        ))
    })?;
    config.ssl_mode(match mode {
        Mode::Disable => SslMode::Disable,
        Mode::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    // libpq: `require` with a root certificate file verifies the chain.
    let verify = match mode {
        Mode::Require if rootcert.as_deref().is_some_and(|r| r != "system") => Mode::VerifyCa,
        m => m,
    };
    Ok(Parsed {
        config,
        tls: Tls::new(client_config(verify, rootcert.as_deref())?),
        mode,
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(mode: Mode, rootcert: Option<&str>) -> Result<ClientConfig, StoreError> {
    let tls_err = |e: rustls::Error| StoreError::Internal(format!("--db: TLS set-up failed: {e}"));
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let config = match mode {
        Mode::Disable | Mode::Prefer | Mode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider())))
            .with_no_client_auth(),
        Mode::VerifyCa | Mode::VerifyFull => {
            let roots = Arc::new(roots(rootcert)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| StoreError::Internal(format!("--db: TLS set-up failed: {e}")))?;
            if mode == Mode::VerifyFull {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                    .with_no_client_auth()
            }
        }
    };
    Ok(config)
}

/// The trusted roots: `sslrootcert`'s PEM file, else the system's store.
fn roots(rootcert: Option<&str>) -> Result<RootCertStore, StoreError> {
    let mut store = RootCertStore::empty();
    match rootcert {
        Some(path) if path != "system" => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    StoreError::Internal(format!(
                        "--db: cannot read sslrootcert={path} ({e}); give a PEM file of CA \
                         certificates (your provider's CA bundle)"
                    ))
                })?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(StoreError::Internal(format!(
                    "--db: sslrootcert={path} holds no usable CA certificate (PEM expected)"
                )));
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(StoreError::Internal(format!(
                    "--db: no CA certificates in the system store for sslmode=verify-*{}; \
                     install the ca-certificates package, or name your provider's CA bundle \
                     with sslrootcert=/path/to/ca.pem",
                    found
                        .errors
                        .first()
                        .map_or_else(String::new, |e| format!(" ({e})"))
                )));
            }
        }
    }
    Ok(store)
}

/// `prefer` / `require`: any certificate (libpq does the same), but the handshake's
/// signatures are still checked against it, so the session is a real TLS session.
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
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
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

/// `verify-ca`: the chain must verify; the name in it need not match the host.
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
    ) -> Result<ServerCertVerified, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
