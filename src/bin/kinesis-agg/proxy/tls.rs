//! HTTPS, for clients that speak the Kinesis API only over TLS (the KPL's
//! daemon, whose endpoint setting takes a host and port but never plain
//! HTTP; agents whose Kinesis output always uses TLS). The certificate
//! chain and key come from PEM files; the proxy does not make one.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The first byte of every TLS connection: a handshake record.
pub(crate) const HANDSHAKE: u8 = 0x16;

/// What a client that speaks plain HTTP to the TLS port is told, before
/// the connection is closed.
pub(crate) const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: application/x-amz-json-1.1\r\n\
Connection: close\r\n\
Content-Length: 104\r\n\
\r\n\
{\"__type\":\"SerializationException\",\"message\":\"this endpoint speaks HTTPS: use https:// in the endpoint\"}";

/// The TLS side of the listener: `cert` a PEM file of the certificate
/// chain (the proxy's own first), `key` its private key (PKCS#8, PKCS#1 or
/// SEC1, PEM). HTTP/2 and HTTP/1.1 are offered by ALPN. An error names the
/// file and what is wrong with it.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let said = |flag: &str, path: &Path, e: &dyn std::fmt::Display| format!("{flag} {}: {e}", path.display());
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| said("--tls-cert", cert, &e))?;
    if chain.is_empty() {
        return Err(said(
            "--tls-cert",
            cert,
            &"no certificate in it (a PEM BEGIN CERTIFICATE block)",
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => said(
            "--tls-key",
            key,
            &"no private key in it (a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)",
        ),
        e => said("--tls-key", key, &e),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "--tls-key {} is not the private key of the first certificate of --tls-cert {}",
                key.display(),
                cert.display()
            ),
            e => format!("--tls-cert and --tls-key: {e}"),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_http_answer_is_one_whole_http_message() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["__type"], "SerializationException");
    }
}
