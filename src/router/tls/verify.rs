//! The root store and the certificate check behind each `sslmode`.
//!
//! rustls checks the chain and the host name together; libpq's weaker modes need less, so two
//! checks wrap or replace it: [`ChainOnly`] (`verify-ca`, and `prefer`/`require` given roots)
//! accepts a certificate whose only fault is its name, and [`AnyCertificate`] (`prefer`/`require`
//! without roots) accepts any certificate. Both still check the handshake signatures, so the
//! server must hold the key of the certificate it shows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::router::tls::{RootCerts, SslMode};

/// libpq's default root file for the verify modes, under the home directory.
const DEFAULT_ROOT_FILE: &str = ".postgresql/root.crt";

/// The rustls client configuration for `mode` (TLS on) with the roots `roots` names.
pub(super) fn client_config(
    mode: SslMode,
    roots: Option<&RootCerts>,
) -> Result<ClientConfig, String> {
    // The provider is chosen here, not taken from a process-wide default an application may
    // not have installed. rustls deprecates ring's provider only for lacking post-quantum key
    // exchange; the alternative (aws-lc-rs) needs cmake to build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let roots = match (roots, mode.verifies()) {
        (Some(roots), _) => Some(load_roots(roots)?),
        (None, true) => Some(load_roots(&RootCerts::File(default_root_file(mode)?))?),
        (None, false) => None,
    };
    let algorithms = provider.signature_verification_algorithms;
    let config = match roots {
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { algorithms })),
        Some(roots) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?;
            if mode == SslMode::VerifyFull {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly { webpki }))
            }
        }
    };
    Ok(config.with_no_client_auth())
}

/// `~/.postgresql/root.crt`, which must exist: a verify mode with no roots could trust nothing.
fn default_root_file(mode: SslMode) -> Result<PathBuf, String> {
    let missing = |what: String| {
        format!(
            "sslmode {mode} needs root certificates: set sslrootcert (DB_SSLROOTCERT) to a PEM \
             file, or to system for verify-full ({what})"
        )
    };
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .ok_or_else(|| missing("HOME is not set, so there is no default".to_string()))?;
    let path = Path::new(&home).join(DEFAULT_ROOT_FILE);
    if !path.is_file() {
        return Err(missing(format!(
            "the default {} does not exist",
            path.display()
        )));
    }
    Ok(path)
}

/// Every certificate of `roots`; an error if there is none.
fn load_roots(roots: &RootCerts) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::File(path) => {
            let shown = path.display();
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {shown}: cannot read it: {e}"))?;
            for certificate in certificates {
                let certificate =
                    certificate.map_err(|e| format!("sslrootcert {shown}: not PEM: {e}"))?;
                store
                    .add(certificate)
                    .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
            }
            if store.is_empty() {
                return Err(format!("sslrootcert {shown}: no certificate in it"));
            }
        }
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_string(), ToString::to_string);
                return Err(format!(
                    "sslrootcert system: no usable certificate in the system store ({why})"
                ));
            }
        }
    }
    Ok(store)
}

/// `verify-ca`: the whole webpki check except the name.
#[derive(Debug)]
struct ChainOnly {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the name only once the chain is sound, so a name error means the chain
        // passed.
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
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
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `prefer` and `require` without roots: encryption against a passive listener, no proof of
/// whom the router talks to (libpq's meaning of these modes).
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused() {
        let path = std::env::temp_dir().join(format!("replisim-empty-{}.pem", std::process::id()));
        let written = std::fs::write(&path, "not a certificate\n");
        assert!(written.is_ok(), "{written:?}");
        let loaded = load_roots(&RootCerts::File(path.clone())).map(|store| store.len());
        let _ = std::fs::remove_file(&path);
        assert!(
            matches!(&loaded, Err(m) if m.contains("no certificate")),
            "{loaded:?}"
        );
    }

    #[test]
    fn require_without_roots_builds_without_reading_files() {
        assert!(client_config(SslMode::Require, None).is_ok());
        assert!(client_config(SslMode::Prefer, None).is_ok());
    }
}
