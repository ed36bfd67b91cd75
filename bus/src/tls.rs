//! HTTPS for weft's servers (the host's Web API, `weft up --tls`; the bus, `weft bus --tls`): a certificate
//! and key the user gives (`--tls-cert FILE --tls-key FILE`, PEM), or a development certificate weft
//! makes for itself: a local certificate
//! authority, written to `<data>/tls/ca.pem` for the user to trust, and a `localhost` / `127.0.0.1` /
//! `::1` server certificate it signed. Microsoft's Python SDK refuses `http://` base URLs, so a local
//! weft needs one.
//!
//! Owns loading certificates, making the development ones and the rustls server configuration (ring as
//! the crypto provider, the one the rest of the build already uses through reqwest). It must not accept
//! connections (the servers do). It lives in weft-bus, the lower crate, so the host re-exports it
//! (`host/src/api/tls.rs`) instead of keeping a copy.
//!
//! The development CA's private key is never written: it signs the server certificate once and is
//! dropped, so nothing on disk can sign another certificate the user's machine would trust. Delete
//! `<data>/tls/` to make new ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// Where a TLS server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM (the server's certificate first).
    pub cert: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// For a development certificate: the CA certificate clients must trust.
    pub trust: Option<PathBuf>,
}

/// The development certificate's folder under the data directory.
pub const DEV_DIR: &str = "tls";

/// The development certificate in `data/tls/`, made on first use (and kept: clients keep trusting it).
pub fn development(data: &Path) -> anyhow::Result<TlsFiles> {
    let dir = data.join(DEV_DIR);
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        trust: Some(dir.join("ca.pem")),
    };
    if files.cert.exists() && files.key.exists() && dir.join("ca.pem").exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let made = make_development().context("making the development certificate")?;
    write(&dir.join("ca.pem"), made.ca.as_bytes(), false)?;
    write(&files.key, made.key.as_bytes(), true)?;
    // The chain: the server's certificate, then the CA's.
    write(
        &files.cert,
        format!("{}{}", made.cert, made.ca).as_bytes(),
        false,
    )?;
    Ok(files)
}

struct Made {
    ca: String,
    cert: String,
    key: String,
}

fn make_development() -> Result<Made, rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "weft development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let issuer = Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Made {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Writes `path`; a private key only for its owner to read.
fn write(path: &Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    use std::io::Write as _;
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("writing {}", path.display()))
}

/// The acceptor for `files`: an error naming the file when one cannot be read or does not match.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain {}", files.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no certificate (PEM `BEGIN CERTIFICATE`)",
        files.cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key {}", files.key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "{} and {} do not make a usable certificate and key",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
