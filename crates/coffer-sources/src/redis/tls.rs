//! TLS for the Redis client (`rediss://`): the options a URL gives in the style of
//! `redis-cli` (`?tls_ca=`, `?tls_cert=` + `?tls_key=`, `?tls_insecure=1`), the rustls client
//! configuration built from them (the system's trusted roots unless `tls_ca` names a CA), the
//! handshake, and handshake errors that say what to do.

use crate::database::{source_error, DbUrl};
use coffer_core::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};
use tokio_rustls::TlsConnector;

/// The URL parameters this module reads.
const PARAMS: [&str; 4] = ["tls_ca", "tls_cert", "tls_key", "tls_insecure"];

/// The TLS options of a `rediss://` URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `tls_ca`: trust this CA (PEM) instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// `tls_cert`: a client certificate (PEM), for servers with `tls-auth-clients yes`.
    pub cert: Option<PathBuf>,
    /// `tls_key`: the client certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// `tls_insecure=1`: do not check the server's certificate.
    pub insecure: bool,
}

impl TlsOptions {
    /// The TLS options of `url`: `None` for `redis://` (which takes no `tls_*` parameter).
    pub fn from_url(url: &DbUrl) -> Result<Option<TlsOptions>> {
        let mut o = TlsOptions::default();
        let mut given = Vec::new();
        for (k, v) in &url.params {
            if !k.starts_with("tls_") {
                continue;
            }
            given.push(k.clone());
            let path = || {
                if v.trim().is_empty() {
                    Err(Error::invalid(format!(
                        "{}: {k}= names no file",
                        url.redacted()
                    )))
                } else {
                    Ok(Some(PathBuf::from(v)))
                }
            };
            match k.as_str() {
                "tls_ca" => o.ca = path()?,
                "tls_cert" => o.cert = path()?,
                "tls_key" => o.key = path()?,
                "tls_insecure" => {
                    o.insecure = match v.to_ascii_lowercase().as_str() {
                        "1" | "true" | "yes" | "on" | "" => true,
                        "0" | "false" | "no" | "off" => false,
                        _ => {
                            return Err(Error::invalid(format!(
                                "{}: tls_insecure={v:?}: use tls_insecure=1",
                                url.redacted()
                            )))
                        }
                    }
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "{}: unknown TLS option {k}; Redis URLs take {}",
                        url.redacted(),
                        PARAMS.join(", ")
                    )))
                }
            }
        }
        if !url.tls {
            if let Some(k) = given.first() {
                return Err(Error::invalid(format!(
                    "{}: {k} is a TLS option, but the URL asks for a plain connection: use \
                     rediss:// for TLS",
                    url.redacted()
                )));
            }
            return Ok(None);
        }
        if o.cert.is_some() != o.key.is_some() {
            return Err(Error::invalid(format!(
                "{}: a client certificate needs both tls_cert=CERT.pem and tls_key=KEY.pem",
                url.redacted()
            )));
        }
        if o.insecure && o.ca.is_some() {
            return Err(Error::invalid(format!(
                "{}: tls_insecure=1 skips the certificate check, so tls_ca would be ignored: \
                 give one or the other",
                url.redacted()
            )));
        }
        Ok(Some(o))
    }

    /// How the server's certificate is checked, for the manifest.
    pub fn mode(&self) -> &'static str {
        match (self.insecure, &self.ca) {
            (true, _) => "not verified (tls_insecure)",
            (false, Some(_)) => "verified against tls_ca",
            (false, None) => "verified against the system's trusted CAs",
        }
    }

    /// The rustls connector these options describe (reads the PEM files).
    pub fn connector(&self, shown: &str) -> Result<TlsConnector> {
        let provider = Arc::new(crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| source_error(format!("{shown}: cannot set up TLS: {e}")))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else {
            builder.with_root_certificates(self.roots(shown)?)
        };
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let certs = read_certs(cert, "tls_cert", shown)?;
                let pem = read_file(key, "tls_key", shown)?;
                let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                    Error::invalid(format!(
                        "{shown}: tls_key={} holds no PEM private key ({e})",
                        key.display()
                    ))
                })?;
                builder.with_client_auth_cert(certs, key_der).map_err(|e| {
                    Error::invalid(format!(
                        "{shown}: the client certificate tls_cert={} and key tls_key={} \
                             cannot be used: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(TlsConnector::from(Arc::new(config)))
    }

    fn roots(&self, shown: &str) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        match &self.ca {
            Some(ca) => {
                for cert in read_certs(ca, "tls_ca", shown)? {
                    roots.add(cert).map_err(|e| {
                        Error::invalid(format!(
                            "{shown}: tls_ca={} holds a certificate Coffer cannot trust as a \
                             CA: {e}",
                            ca.display()
                        ))
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    tracing::warn!(
                        "{shown}: no trusted CA certificates found on this system \
                         (install ca-certificates, or give the server's CA with ?tls_ca=FILE)"
                    );
                }
            }
        }
        Ok(roots)
    }

    /// Runs the TLS handshake on `tcp` for `host` (the certificate must be valid for it).
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        host: &str,
        addr: &str,
        shown: &str,
    ) -> Result<TlsStream<TcpStream>> {
        let connector = self.connector(shown)?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            Error::invalid(format!(
                "{shown}: {host:?} cannot be used as a TLS server name: {e}"
            ))
        })?;
        if self.insecure {
            tracing::warn!(
                "{addr}: tls_insecure=1: the Redis server's certificate is NOT checked; anyone \
                 on the way can read and change the data (give its CA with ?tls_ca=FILE instead)"
            );
        }
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| self.handshake_error(&e, host, addr, shown))
    }

    fn handshake_error(&self, e: &std::io::Error, host: &str, addr: &str, shown: &str) -> Error {
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
        let ca = match &self.ca {
            Some(p) => format!("the CA in tls_ca={}", p.display()),
            None => "the system's trusted CAs".to_string(),
        };
        let hint = match inner {
            Some(rustls::Error::InvalidCertificate(c)) => match c {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => format!(
                    "the server's certificate is not issued for {host}: connect with a host \
                     name the certificate names"
                ),
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => {
                    "the server's certificate has expired or is not valid yet: renew it, or \
                     check this machine's clock"
                        .to_string()
                }
                _ => format!(
                    "the server's certificate is not trusted (it is not signed by {ca}): give \
                     the CA that signed it with ?tls_ca=/path/to/ca.pem"
                ),
            },
            Some(rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
                | AlertDescription::HandshakeFailure
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown,
            )) if self.cert.is_none() => "the server refused the handshake; if it requires \
                 client certificates (tls-auth-clients yes), give one with \
                 ?tls_cert=/path/to/cert.pem&tls_key=/path/to/key.pem"
                .to_string(),
            Some(rustls::Error::AlertReceived(_)) if self.cert.is_some() => {
                "the server refused the handshake: check that it trusts the CA of the client \
                 certificate in tls_cert"
                    .to_string()
            }
            _ => format!(
                "is {addr} Redis's TLS port (redis-server --tls-port)? For a plain port use \
                 redis://"
            ),
        };
        source_error(format!(
            "the TLS handshake with Redis at {addr} ({shown}) failed: {e}; {hint}"
        ))
    }
}

fn read_file(path: &Path, what: &str, shown: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::invalid(format!(
            "{shown}: cannot read {what}={}: {e}",
            path.display()
        ))
    })
}

fn read_certs(path: &Path, what: &str, shown: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path, what, shown)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::invalid(format!(
                "{shown}: {what}={} is not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::invalid(format!(
            "{shown}: {what}={} holds no certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// `tls_insecure=1`: any certificate is accepted, but the handshake's signatures are still
/// checked (so the connection is encrypted, just not authenticated).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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

    fn opts(url: &str) -> Result<Option<TlsOptions>> {
        TlsOptions::from_url(&DbUrl::parse(url).unwrap())
    }

    #[test]
    fn options_from_the_url() {
        assert_eq!(opts("redis://h:1/0").unwrap(), None);
        assert_eq!(opts("rediss://h:1").unwrap(), Some(TlsOptions::default()));
        let o = opts("rediss://:pw@h:1/2?tls_ca=/c/ca.pem&tls_cert=/c/me.pem&tls_key=/c/me.key")
            .unwrap()
            .unwrap();
        assert_eq!(o.ca.as_deref(), Some(Path::new("/c/ca.pem")));
        assert_eq!(o.cert.as_deref(), Some(Path::new("/c/me.pem")));
        assert_eq!(o.key.as_deref(), Some(Path::new("/c/me.key")));
        assert!(!o.insecure);
        assert!(
            opts("rediss://h:1?tls_insecure=1")
                .unwrap()
                .unwrap()
                .insecure
        );
        assert!(
            !opts("rediss://h:1?tls_insecure=0")
                .unwrap()
                .unwrap()
                .insecure
        );
        // Bad combinations name the problem, never the password.
        for (url, says) in [
            ("redis://:pw@h:1?tls_ca=/ca.pem", "rediss://"),
            ("rediss://:pw@h:1?tls_cert=/me.pem", "tls_key"),
            ("rediss://:pw@h:1?tls_insecure=maybe", "tls_insecure"),
            (
                "rediss://:pw@h:1?tls_insecure=1&tls_ca=/ca.pem",
                "one or the other",
            ),
            ("rediss://:pw@h:1?tls_cacert=/ca.pem", "tls_ca, tls_cert"),
            ("rediss://:pw@h:1?tls_ca=", "names no file"),
        ] {
            let e = opts(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains(":pw"), "{e}");
        }
    }

    #[test]
    fn unreadable_files_are_named() {
        let o = opts("rediss://h:1?tls_ca=/nonexistent/ca.pem")
            .unwrap()
            .unwrap();
        let e = o.connector("rediss://h:1").err().unwrap().to_string();
        assert!(e.contains("tls_ca=/nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let o = TlsOptions {
            ca: Some(junk),
            ..TlsOptions::default()
        };
        let e = o.connector("x").err().unwrap().to_string();
        assert!(e.contains("holds no certificate"), "{e}");
        // The system's roots and the insecure mode build without files.
        assert!(TlsOptions::default().connector("x").is_ok());
        let insecure = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        assert!(insecure.connector("x").is_ok());
    }
}
