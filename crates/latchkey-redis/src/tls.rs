//! TLS for stores built on a `rediss://` URL: which root certificates to trust,
//! and the `redis` client that trusts them.

use redis::{Client, ConnectionInfo, IntoConnectionInfo as _};

use crate::RedisSetupError;

#[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
use crate::RedisStoreBuilder;

/// The TLS settings of a [`RedisStoreBuilder`](crate::RedisStoreBuilder).
#[derive(Clone, Default)]
pub(crate) struct TlsSettings {
    /// PEM certificates to trust instead of the platform's roots.
    #[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
    root_certificate: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut settings = f.debug_struct("TlsSettings");
        #[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
        settings.field("root_certificate", &self.root_certificate.is_some());
        settings.finish()
    }
}

impl TlsSettings {
    /// The client for `url` with these settings.
    pub(crate) fn client(&self, url: &str) -> Result<Client, RedisSetupError> {
        let info = connection_info(url)?;
        #[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
        let built = |result: redis::RedisResult<Client>| {
            result.map_err(|err| RedisSetupError::tls("the TLS client could not be built", err))
        };
        #[cfg(feature = "tls-rustls")]
        if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            // The roots are always handed over: when the native-tls feature is
            // compiled in too, the `redis` crate's rustls client given none
            // trusts no certificate at all.
            let roots = match &self.root_certificate {
                Some(pem) => checked(pem)?,
                None => platform_roots()?,
            };
            ensure_crypto_provider();
            return built(Client::build_with_tls(info, certificates(roots)));
        }
        #[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
        if let Some(pem) = &self.root_certificate {
            if !matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
                return Err(RedisSetupError::tls(
                    "a root certificate was given for a URL without TLS; use rediss://",
                    None,
                ));
            }
            return built(Client::build_with_tls(info, certificates(checked(pem)?)));
        }
        Client::open(info).map_err(RedisSetupError::Url)
    }
}

/// `url` parsed for the `redis` crate, or why not. A `rediss://` (or
/// `valkeys://`) URL that would parse as plain text is refused for its TLS
/// (a build of the `redis` crate without TLS, or a fragment other than
/// `#insecure`), anything else as a URL.
pub(crate) fn connection_info(url: &str) -> Result<ConnectionInfo, RedisSetupError> {
    url.into_connection_info().map_err(|err| {
        let plain = redis::parse_redis_url(url).and_then(|mut parsed| {
            let scheme = match parsed.scheme() {
                "rediss" => "redis",
                "valkeys" => "valkey",
                _ => return None,
            };
            parsed.set_scheme(scheme).ok()?;
            parsed.set_fragment(None);
            Some(parsed)
        });
        match plain {
            Some(plain) if plain.as_str().into_connection_info().is_ok() => RedisSetupError::tls(
                "the URL asks for TLS, which this build cannot give as asked (enable the \
                 tls-rustls or tls-native-tls feature; the only fragment is #insecure)",
                err,
            ),
            _ => RedisSetupError::Url(err),
        }
    })
}

#[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
impl RedisStoreBuilder {
    /// Trusts the certificates in `pem` (one or more PEM `CERTIFICATE` blocks:
    /// a private certificate authority, say) instead of the platform's root
    /// certificates, for a `rediss://` URL.
    ///
    /// The server's certificate must still be valid for the URL's host (a
    /// name, or an IP address among its subject alternative names).
    ///
    /// Needs the `tls-rustls` or `tls-native-tls` feature.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use latchkey_redis::RedisStore;
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = std::fs::read("/etc/myapp/redis-ca.pem")?;
    /// let store = RedisStore::builder("rediss://redis.internal:6380")
    ///     .tls_root_certificate(ca)
    ///     .build()?;
    /// # drop(store);
    /// # Ok(())
    /// # }
    /// ```
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.root_certificate = Some(pem.into());
        self
    }
}

#[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
fn certificates(root_cert: Vec<u8>) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    }
}

/// `pem` if it holds certificates and nothing unreadable: the `redis` crate's
/// rustls client takes one without any as an empty trust store, which would
/// only show as failed connections.
#[cfg(feature = "tls-rustls")]
fn checked(pem: &[u8]) -> Result<Vec<u8>, RedisSetupError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    const UNUSABLE: &str = "unusable TLS root certificate";
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|err| RedisSetupError::Tls {
            reason: UNUSABLE,
            source: Some(Box::new(err)),
        })?;
        found += 1;
    }
    if found == 0 {
        return Err(RedisSetupError::Tls {
            reason: UNUSABLE,
            source: Some("no PEM CERTIFICATE block".into()),
        });
    }
    Ok(pem.to_vec())
}

/// `pem` if it holds a certificate: native-tls would refuse one without only
/// when the client is built, with another message.
#[cfg(all(feature = "tls-native-tls", not(feature = "tls-rustls")))]
fn checked(pem: &[u8]) -> Result<Vec<u8>, RedisSetupError> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    if !pem.windows(BEGIN.len()).any(|window| window == BEGIN) {
        return Err(RedisSetupError::Tls {
            reason: "unusable TLS root certificate",
            source: Some("no PEM CERTIFICATE block".into()),
        });
    }
    Ok(pem.to_vec())
}

/// The platform's root certificates as PEM, the form `redis` takes them in.
///
/// `SSL_CERT_FILE` and `SSL_CERT_DIR` replace the platform's store, as for
/// OpenSSL.
#[cfg(feature = "tls-rustls")]
fn platform_roots() -> Result<Vec<u8>, RedisSetupError> {
    use base64::Engine as _;

    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let reasons: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(RedisSetupError::Tls {
            reason: "no root certificate to verify the server with; give one with tls_root_certificate",
            source: (!reasons.is_empty()).then(|| reasons.join("; ").into()),
        });
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let mut pem = Vec::new();
    for cert in &found.certs {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in engine.encode(cert).as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    Ok(pem)
}

/// Makes sure rustls has a process-wide crypto provider, which the `redis`
/// crate's client needs: rustls picks one by itself only when exactly one is
/// compiled in, and another crate of the application may compile in aws-lc-rs
/// next to this crate's ring. One the application installed stays.
#[cfg(feature = "tls-rustls")]
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer leaves that one in place, as wanted.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(any(feature = "tls-rustls", feature = "tls-native-tls")))]
    fn a_tls_url_in_a_build_without_tls_is_a_tls_error() {
        for url in [
            "rediss://cache.internal:6380",
            "valkeys://cache.internal:6380/2",
        ] {
            let refused = connection_info(url);
            assert!(
                matches!(&refused, Err(RedisSetupError::Tls { reason, .. }) if reason.contains("tls-rustls")),
                "{url}: {refused:?}"
            );
        }
        assert!(connection_info("redis://cache.internal:6379").is_ok());
        let cluster = latchkey_testkit::block_on(crate::RedisStore::connect_cluster(
            ["rediss://127.0.0.1:7000"],
            std::time::Duration::from_secs(1),
        ));
        assert!(
            matches!(&cluster, Err(RedisSetupError::Tls { .. })),
            "{:?}",
            cluster.err()
        );
    }

    #[test]
    #[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
    fn a_tls_url_that_cannot_be_served_as_asked_is_a_tls_error() {
        let refused = connection_info("rediss://cache.internal:6380#verify-less");
        assert!(
            matches!(&refused, Err(RedisSetupError::Tls { .. })),
            "{refused:?}"
        );
        assert!(connection_info("rediss://cache.internal:6380").is_ok());
        assert!(connection_info("rediss://cache.internal:6380#insecure").is_ok());
    }

    #[test]
    fn a_url_that_is_not_a_redis_url_is_a_url_error() {
        for url in [
            "http://cache.internal:6379",
            "rediss://cache.internal:notaport",
            "redis://",
            "",
        ] {
            let refused = connection_info(url);
            assert!(
                matches!(&refused, Err(RedisSetupError::Url(_))),
                "{url}: {refused:?}"
            );
        }
    }
}
