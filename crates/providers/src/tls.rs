//! Which server certificate a provider trusts: the public web PKI roots by default (an API
//! behind an ACME certificate), or a CA file and/or a pinned SHA-256 fingerprint. Proxmox nodes
//! usually present a certificate signed by the cluster's own CA (`/etc/pve/pve-root-ca.pem`),
//! so the hosting provider gives that CA's file, pins the node certificate's fingerprint, or
//! both.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// What the API's certificate must satisfy.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// PEM certificates of the CAs to trust instead of the public roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The SHA-256 fingerprint the server's certificate must have.
    pub fingerprint: Option<[u8; 32]>,
}

/// Parses a fingerprint as Proxmox shows it (`AB:CD:…`, 32 bytes), colons optional.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or("it is not hexadecimal")?;
    bytes
        .try_into()
        .map_err(|_| "a SHA-256 fingerprint has 32 bytes".to_owned())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client TLS configuration for `trust`.
pub fn client_config(trust: &Trust) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let chain = match &trust.ca_pem {
        Some(pem) => Some(ca_verifier(pem, provider.clone())?),
        None if trust.fingerprint.is_none() => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (trust.fingerprint, chain) {
        (Some(fingerprint), chain) => Arc::new(PinnedVerifier {
            fingerprint,
            chain,
            algorithms: provider.signature_verification_algorithms,
        }),
        (None, Some(chain)) => chain,
        (None, None) => return Err("no way to check the server's certificate".to_owned()),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn ca_verifier(
    pem: &[u8],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("it is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("it holds a certificate that cannot be a CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err("it holds no certificate".to_owned());
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| e.to_string())
}

/// Accepts the one certificate whose SHA-256 fingerprint is pinned (and, when a CA is given
/// too, that also chains to it); handshake signatures are checked as usual.
#[derive(Debug)]
struct PinnedVerifier {
    fingerprint: [u8; 32],
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if seen != self.fingerprint {
            return Err(rustls::Error::General(format!(
                "the server's certificate has SHA-256 fingerprint {}, not the pinned one",
                seen.map(|b| format!("{b:02X}")).join(":")
            )));
        }
        match &self.chain {
            Some(chain) => {
                chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
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
    fn fingerprints_parse_with_or_without_colons() {
        let colons = ["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&colons).unwrap(), [0xAB; 32]);
        assert_eq!(parse_fingerprint(&"ab".repeat(32)).unwrap(), [0xAB; 32]);
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let trust = Trust {
            ca_pem: Some(b"not a certificate".to_vec()),
            fingerprint: None,
        };
        assert!(client_config(&trust).is_err());
    }
}
