//! Certificates for TLS servers of a test's own (feature `tls`).
//!
//! Every call makes a new certificate authority, so a test can also check that
//! a client trusting another one is refused.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::servers::unique_name;

/// A throwaway certificate authority and a server certificate it signed, valid
/// for `localhost` and `127.0.0.1`, also written as PEM files to a directory of
/// their own that is removed on drop.
///
/// # Examples
///
/// ```
/// let certs = latchkey_testkit::tls::TestCertificates::generate()?;
/// assert!(certs.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
/// assert!(certs.key_file().is_file());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TestCertificates {
    dir: PathBuf,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl TestCertificates {
    /// Generates the authority and the server certificate and writes
    /// `ca.pem`, `server.pem` and `server.key` to a new temporary directory.
    ///
    /// # Errors
    ///
    /// When generating or writing them fails.
    pub fn generate() -> std::io::Result<Self> {
        let (ca_pem, cert_pem, key_pem) = generate().map_err(std::io::Error::other)?;
        let dir = std::env::temp_dir().join(unique_name("latchkey_certs"));
        std::fs::create_dir_all(&dir)?;
        let certs = Self {
            dir,
            ca_pem,
            cert_pem,
            key_pem,
        };
        std::fs::write(certs.ca_file(), &certs.ca_pem)?;
        std::fs::write(certs.cert_file(), &certs.cert_pem)?;
        std::fs::write(certs.key_file(), &certs.key_pem)?;
        Ok(certs)
    }

    /// The authority's certificate, PEM: what a client trusts.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The server's private key, PEM (PKCS #8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The file holding [`ca_pem`](Self::ca_pem).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The file holding [`cert_pem`](Self::cert_pem).
    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The file holding [`key_pem`](Self::key_pem).
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The directory of the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn generate() -> Result<(String, String, String), rcgen::Error> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own, so that a client trusting another authority finds
    // no issuer at all, as with a real stranger's certificate.
    ca.distinguished_name
        .push(DnType::CommonName, unique_name("latchkey test CA"));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);

    let mut server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let cert_pem = server.signed_by(&server_key, &issuer)?.pem();
    Ok((ca_pem, cert_pem, server_key.serialize_pem()))
}
