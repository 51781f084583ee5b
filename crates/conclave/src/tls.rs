//! TLS for every listener: the operator's certificate, or a self-signed
//! one generated into the data directory on first start so that
//! `conclave serve` works with no configuration at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use conclave_server::Config;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn write_private(path: &Path, data: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(data.as_bytes())
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, data)
    }
}

/// Paths of the certificate and key, generating a self-signed pair when
/// none is configured and none was generated before.
pub fn ensure_cert(cfg: &Config) -> Result<(PathBuf, PathBuf), String> {
    if !cfg.tls.cert.is_empty() {
        return Ok((PathBuf::from(&cfg.tls.cert), PathBuf::from(&cfg.tls.key)));
    }
    let dir = cfg.data_dir.join("tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut names: Vec<String> = cfg.hosts.clone();
    for h in &cfg.hosts {
        names.push(format!("conference.{h}"));
        names.push(format!("upload.{h}"));
    }
    if !cfg.guest_host.is_empty() {
        names.push(cfg.guest_host.clone());
    }
    names.push("127.0.0.1".into());
    names.push("::1".into());
    names.dedup();
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate a certificate: {e}"))?;
    std::fs::write(&cert, ck.cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    write_private(&key, &ck.signing_key.serialize_pem())
        .map_err(|e| format!("cannot write {}: {e}", key.display()))?;
    tracing::info!(path = %cert.display(), "generated a self-signed certificate");
    Ok((cert, key))
}

pub fn server_config(cfg: &Config, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, String> {
    let (cert, key) = ensure_cert(cfg)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut sc = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    sc.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(sc))
}
