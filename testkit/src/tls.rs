//! Self-signed server certificates for the protocol servers of the tests (SMTP, FTPS).

use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// A fresh self-signed certificate for `localhost` and 127.0.0.1, with its key.
pub struct Certificate {
    /// The certificate, PEM: what a client is told to trust.
    pub pem: String,
    key_pem: String,
}

impl Certificate {
    pub fn localhost() -> Certificate {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let made = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
        Certificate {
            pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
        }
    }

    /// The private key (PEM), for a server started as its own process.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The server side of TLS with this certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        let cert = CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key PEM");
        let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("a server certificate");
        TlsAcceptor::from(Arc::new(config))
    }
}
