//! TLS for the pool a store builds on a URL: which connector its connections
//! use, from the builder's TLS settings and the URL's `sslmode`.

use deadpool_postgres::{Manager, ManagerConfig};
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;

#[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
use crate::builder::PostgresStoreBuilder;
use crate::error::PostgresConfigError;

/// The TLS settings of a [`PostgresStoreBuilder`](crate::PostgresStoreBuilder).
#[derive(Clone, Default)]
pub(crate) struct TlsSettings {
    choice: Choice,
}

#[derive(Clone, Default)]
enum Choice {
    /// As the URL's `sslmode` says, trusting the platform's root certificates.
    #[default]
    FromUrl,
    /// TLS, trusting these PEM certificates only.
    #[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
    RootCertificate(Vec<u8>),
    /// TLS, as this configuration says.
    #[cfg(feature = "tls-rustls")]
    Rustls(std::sync::Arc<rustls::ClientConfig>),
    /// TLS through this connector.
    #[cfg(feature = "tls-native-tls")]
    NativeTls(native_tls::TlsConnector),
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let choice = match self.choice {
            Choice::FromUrl => "from the URL",
            #[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
            Choice::RootCertificate(_) => "root certificate",
            #[cfg(feature = "tls-rustls")]
            Choice::Rustls(_) => "rustls configuration",
            #[cfg(feature = "tls-native-tls")]
            Choice::NativeTls(_) => "native-tls connector",
        };
        f.debug_struct("TlsSettings")
            .field("choice", &choice)
            .finish()
    }
}

impl TlsSettings {
    /// Whether the builder was given a TLS setting.
    pub(crate) fn is_set(&self) -> bool {
        !matches!(self.choice, Choice::FromUrl)
    }

    /// The pool manager for `config`, with the connector these settings and the
    /// URL's `sslmode` call for.
    ///
    /// A TLS setting makes TLS required: a server that does not offer it is
    /// refused rather than spoken to in plain text, as `sslmode=prefer` (the
    /// default) would.
    pub(crate) fn manager(
        &self,
        config: tokio_postgres::Config,
        manager: ManagerConfig,
    ) -> Result<Manager, PostgresConfigError> {
        match &self.choice {
            Choice::FromUrl => match config.get_ssl_mode() {
                // `prefer` stays plain text, as without TLS features: a
                // feature compiled in for another part of the application
                // must not change how this store connects.
                SslMode::Disable | SslMode::Prefer => {
                    Ok(Manager::from_config(config, NoTls, manager))
                }
                _ => platform(config, manager),
            },
            #[cfg(feature = "tls-rustls")]
            Choice::RootCertificate(pem) => {
                let config = required(config)?;
                Ok(rustls_manager(
                    rustls_with_roots(rustls_roots(pem)?)?,
                    config,
                    manager,
                ))
            }
            #[cfg(all(feature = "tls-native-tls", not(feature = "tls-rustls")))]
            Choice::RootCertificate(pem) => {
                let config = required(config)?;
                let mut builder = native_tls::TlsConnector::builder();
                builder.disable_built_in_roots(true);
                for cert in pem_blocks(pem)? {
                    builder.add_root_certificate(cert);
                }
                let connector = builder
                    .build()
                    .map_err(|err| tls_failure("the TLS connector could not be made", err))?;
                Ok(native_manager(connector, config, manager))
            }
            #[cfg(feature = "tls-rustls")]
            Choice::Rustls(rustls_config) => Ok(rustls_manager(
                rustls::ClientConfig::clone(rustls_config),
                required(config)?,
                manager,
            )),
            #[cfg(feature = "tls-native-tls")]
            Choice::NativeTls(connector) => Ok(native_manager(
                connector.clone(),
                required(config)?,
                manager,
            )),
        }
    }
}

/// `config` with TLS required, for a builder given TLS settings.
#[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
fn required(
    mut config: tokio_postgres::Config,
) -> Result<tokio_postgres::Config, PostgresConfigError> {
    if config.get_ssl_mode() == SslMode::Disable {
        return Err(tls_error(
            "the URL says sslmode=disable, but the builder was given TLS settings",
        ));
    }
    config.ssl_mode(SslMode::Require);
    Ok(config)
}

#[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
impl PostgresStoreBuilder {
    /// Connects over TLS, trusting the certificates in `pem` (one or more PEM
    /// `CERTIFICATE` blocks: a private certificate authority, say) instead of
    /// the platform's root certificates.
    ///
    /// TLS is then required whatever the URL's `sslmode` (but `disable`, which
    /// `build` refuses): a server that does not offer it is refused. The
    /// server's certificate must be valid for the URL's host (a name, or an IP
    /// address among its subject alternative names).
    ///
    /// Uses rustls with the `tls-rustls` feature, else native-tls. A setting
    /// that shapes connections: [`build`](Self::build) refuses it on
    /// [`builder_on_pool`](crate::PostgresStore::builder_on_pool).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use latchkey_postgres::PostgresStore;
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = std::fs::read("/etc/myapp/postgres-ca.pem")?;
    /// let store = PostgresStore::builder("postgres://app@db.internal/app")
    ///     .tls_root_certificate(ca)
    ///     .build()?;
    /// # drop(store);
    /// # Ok(())
    /// # }
    /// ```
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.choice = Choice::RootCertificate(pem.into());
        self
    }

    /// Connects over TLS as `config` says (its root certificates, client
    /// certificate, verifier); TLS is then required as for
    /// [`tls_root_certificate`](Self::tls_root_certificate).
    ///
    /// Needs the `tls-rustls` feature; [`rustls`](crate::rustls) is this
    /// crate's version of the crate.
    #[cfg(feature = "tls-rustls")]
    pub fn rustls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls.choice = Choice::Rustls(std::sync::Arc::new(config));
        self
    }

    /// Connects over TLS through `connector`; TLS is then required as for
    /// [`tls_root_certificate`](Self::tls_root_certificate).
    ///
    /// Needs the `tls-native-tls` feature; [`native_tls`](crate::native_tls)
    /// is this crate's version of the crate.
    #[cfg(feature = "tls-native-tls")]
    pub fn native_tls_connector(mut self, connector: native_tls::TlsConnector) -> Self {
        self.tls.choice = Choice::NativeTls(connector);
        self
    }
}

/// TLS refused for a reason of this crate's, with no library error behind it.
fn tls_error(reason: impl Into<String>) -> PostgresConfigError {
    PostgresConfigError::Tls {
        reason: reason.into(),
        source: None,
    }
}

/// TLS refused because the TLS library failed; its error is kept as the source.
#[cfg(any(feature = "tls-rustls", feature = "tls-native-tls"))]
fn tls_failure(
    reason: &str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> PostgresConfigError {
    PostgresConfigError::Tls {
        reason: reason.to_owned(),
        source: Some(source.into()),
    }
}

/// TLS trusting the platform's root certificates, for `sslmode=require`.
#[cfg(feature = "tls-rustls")]
fn platform(
    config: tokio_postgres::Config,
    manager: ManagerConfig,
) -> Result<Manager, PostgresConfigError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let reasons: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(tls_error(format!(
            "no root certificate found on this system to verify the server with ({}); \
             give one with tls_root_certificate",
            reasons.join("; ")
        )));
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    Ok(rustls_manager(rustls_with_roots(roots)?, config, manager))
}

/// TLS trusting the platform's root certificates, for `sslmode=require`.
#[cfg(all(feature = "tls-native-tls", not(feature = "tls-rustls")))]
fn platform(
    config: tokio_postgres::Config,
    manager: ManagerConfig,
) -> Result<Manager, PostgresConfigError> {
    let connector = native_tls::TlsConnector::new()
        .map_err(|err| tls_failure("the platform's TLS connector could not be made", err))?;
    Ok(native_manager(connector, config, manager))
}

#[cfg(not(any(feature = "tls-rustls", feature = "tls-native-tls")))]
fn platform(
    _config: tokio_postgres::Config,
    _manager: ManagerConfig,
) -> Result<Manager, PostgresConfigError> {
    Err(tls_error(
        "the URL's sslmode requires TLS: enable the tls-rustls or tls-native-tls feature of \
         latchkey-postgres (postgres-rustls or postgres-native-tls of latchkey)",
    ))
}

/// The certificates of a PEM bundle, for rustls.
#[cfg(feature = "tls-rustls")]
fn rustls_roots(pem: &[u8]) -> Result<rustls::RootCertStore, PostgresConfigError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|err| tls_failure("root certificate does not parse", err))?;
        roots
            .add(cert)
            .map_err(|err| tls_failure("root certificate is not usable", err))?;
    }
    if roots.is_empty() {
        return Err(tls_error("root certificate: no PEM CERTIFICATE block"));
    }
    Ok(roots)
}

/// A rustls configuration that verifies servers against `roots`, on the
/// application's process-wide crypto provider if it installed one, else ring.
#[cfg(feature = "tls-rustls")]
fn rustls_with_roots(
    roots: rustls::RootCertStore,
) -> Result<rustls::ClientConfig, PostgresConfigError> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()));
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| tls_failure("the crypto provider offers no safe protocol version", err))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(feature = "tls-rustls")]
fn rustls_manager(
    rustls_config: rustls::ClientConfig,
    config: tokio_postgres::Config,
    manager: ManagerConfig,
) -> Manager {
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_config);
    Manager::from_config(config, connector, manager)
}

#[cfg(feature = "tls-native-tls")]
fn native_manager(
    connector: native_tls::TlsConnector,
    config: tokio_postgres::Config,
    manager: ManagerConfig,
) -> Manager {
    let connector = postgres_native_tls::MakeTlsConnector::new(connector);
    Manager::from_config(config, connector, manager)
}

/// The certificates of a PEM bundle: native-tls reads one at a time.
#[cfg(all(feature = "tls-native-tls", not(feature = "tls-rustls")))]
fn pem_blocks(pem: &[u8]) -> Result<Vec<native_tls::Certificate>, PostgresConfigError> {
    const END: &str = "-----END CERTIFICATE-----";
    let text = std::str::from_utf8(pem)
        .map_err(|err| tls_failure("root certificate does not parse", err))?;
    let certs = text
        .split_inclusive(END)
        .filter(|block| block.contains(END))
        .map(|block| {
            native_tls::Certificate::from_pem(block.trim().as_bytes())
                .map_err(|err| tls_failure("root certificate does not parse", err))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(tls_error("root certificate: no PEM CERTIFICATE block"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use crate::{PostgresConfigError, PostgresStore};

    #[test]
    fn sslmode_require_needs_a_tls_feature() {
        let built = PostgresStore::builder("postgres://app@127.0.0.1/app?sslmode=require").build();
        if cfg!(any(feature = "tls-rustls", feature = "tls-native-tls")) {
            assert!(built.is_ok(), "{built:?}");
        } else {
            assert!(
                matches!(&built, Err(PostgresConfigError::Tls { reason, .. }) if reason.contains("feature")),
                "{built:?}"
            );
        }
    }
}
