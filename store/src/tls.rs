//! TLS for the client and peer listeners and for connections to peers, with
//! rustls (ring). Flags follow etcd: `--cert-file --key-file --trusted-ca-file
//! --client-cert-auth` for clients and their `--peer-*` twins for members.
//!
//! With client certificate authentication on, a connection whose certificate
//! does not chain to the trusted CA fails in the handshake: it never reaches a
//! gRPC handler, so it gets nothing.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::error::{Error, Result};

/// One side's certificate files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--cert-file` / `--peer-cert-file`: PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// `--key-file` / `--peer-key-file`: PEM private key.
    pub key: Option<PathBuf>,
    /// `--trusted-ca-file` / `--peer-trusted-ca-file`: PEM CA bundle.
    pub trusted_ca: Option<PathBuf>,
    /// `--client-cert-auth` / `--peer-client-cert-auth`.
    pub client_cert_auth: bool,
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::Config(format!("cannot read {what} {}: {e}", path.display())))
}

fn certs(path: &PathBuf, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, what)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Config(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{what} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsFiles {
    /// Whether the certificate or its key is missing.
    pub fn cert_and_key_missing(&self) -> bool {
        self.cert.is_none() || self.key.is_none()
    }

    fn cert_and_key(&self, flags: &str) -> Result<(&PathBuf, &PathBuf)> {
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Ok((c, k)),
            _ => Err(Error::Config(format!(
                "TLS needs both {flags} (a certificate and its key)"
            ))),
        }
    }

    /// The rustls configuration of a listener; `flags` names the flags in errors.
    pub fn server_config(&self, flags: &str) -> Result<Arc<ServerConfig>> {
        let (cert, key) = self.cert_and_key(flags)?;
        let chain = certs(cert, "certificate")?;
        let key = PrivateKeyDer::from_pem_slice(&read(key, "key")?)
            .map_err(|e| Error::Config(format!("key {}: {e}", key.display())))?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?;
        let builder = if self.client_cert_auth {
            let Some(ca) = &self.trusted_ca else {
                return Err(Error::Config(
                    "client certificate authentication needs a trusted CA file".into(),
                ));
            };
            let mut roots = RootCertStore::empty();
            for c in certs(ca, "trusted CA file")? {
                roots
                    .add(c)
                    .map_err(|e| Error::Config(format!("trusted CA {}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| Error::Config(format!("trusted CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| Error::Config(format!("certificate {}: {e}", cert.display())))?;
        // gRPC runs on HTTP/2; clients such as grpc-go insist on ALPN h2.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// tonic's client configuration for connections to peers.
    pub fn client_config(&self) -> Result<tonic::transport::ClientTlsConfig> {
        let mut tls = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &self.trusted_ca {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read(
                ca,
                "trusted CA file",
            )?));
        }
        if let (Some(c), Some(k)) = (&self.cert, &self.key) {
            tls = tls.identity(tonic::transport::Identity::from_pem(
                read(c, "certificate")?,
                read(k, "key")?,
            ));
        }
        Ok(tls)
    }
}
