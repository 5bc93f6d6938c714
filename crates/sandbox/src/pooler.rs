//! The projects' pooler route, as Supavisor serves it: a listener in front of the admin
//! PostgreSQL server that takes TLS, checks the login of a project's pooler user
//! (`postgres.{ref}`) against the project's current database password, and then hands the
//! session to the server.
//!
//! It exists because the test server trusts every loopback login, so a wrong password would
//! otherwise get in, and adopting a project whose password is not ours could not be shown.
//! The password is asked for in clear text inside TLS (as Supavisor may); what passes is the
//! client's own startup message, unchanged, so the session is the server's.
//!
//! The certificate is self-signed, made at start by the `openssl` command into a temporary
//! directory; clients connect with `sslmode=require`, which encrypts without checking it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// `SSLRequest` and `GSSENCRequest` codes of the startup phase.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
/// A startup message is small; anything bigger is not a client of ours.
const MAX_STARTUP: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum PoolerError {
    #[error("cannot make the pooler's TLS certificate with openssl: {0}")]
    Certificate(String),
    #[error("cannot listen for the pooler: {0}")]
    Listen(#[from] std::io::Error),
    #[error("the pooler's TLS setup failed: {0}")]
    Tls(String),
}

/// The current password of each pooler user, kept by the project databases.
pub(crate) type Passwords = Arc<Mutex<HashMap<String, String>>>;

/// The running listener; dropped, it stops accepting.
#[derive(Debug)]
pub(crate) struct PoolerFront {
    address: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for PoolerFront {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl PoolerFront {
    /// Listens on the loopback and hands checked sessions to `upstream` (`host:port`).
    pub(crate) async fn start(upstream: String, passwords: Passwords) -> Result<Self, PoolerError> {
        let acceptor = TlsAcceptor::from(Arc::new(server_config()?));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let accepting = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                let passwords = passwords.clone();
                tokio::spawn(async move {
                    if let Err(error) = serve(client, acceptor, &upstream, &passwords).await {
                        tracing::debug!(%error, "pooler session ended");
                    }
                });
            }
        });
        Ok(Self { address, accepting })
    }

    pub(crate) fn port(&self) -> u16 {
        self.address.port()
    }
}

fn server_config() -> Result<rustls::ServerConfig, PoolerError> {
    let dir = tempfile::tempdir().map_err(|e| PoolerError::Certificate(e.to_string()))?;
    let key = dir.path().join("key.pem");
    let cert = dir.path().join("cert.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| PoolerError::Certificate(e.to_string()))?;
    if !made.status.success() {
        return Err(PoolerError::Certificate(
            String::from_utf8_lossy(&made.stderr).trim().to_owned(),
        ));
    }
    let certs = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| PoolerError::Certificate(e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_file(&key).map_err(|e| PoolerError::Certificate(e.to_string()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| PoolerError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| PoolerError::Tls(e.to_string()))
}

/// One client: TLS if asked for, the startup message, the password check, then the server.
async fn serve(
    mut client: TcpStream,
    acceptor: TlsAcceptor,
    upstream: &str,
    passwords: &Passwords,
) -> std::io::Result<()> {
    loop {
        let message = read_startup(&mut client).await?;
        match code_of(&message) {
            SSL_REQUEST => {
                client.write_all(b"S").await?;
                let tls = acceptor.accept(client).await?;
                return after_tls(tls, upstream, passwords).await;
            }
            GSSENC_REQUEST => client.write_all(b"N").await?,
            _ => return login(client, message, upstream, passwords).await,
        }
    }
}

async fn after_tls<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    upstream: &str,
    passwords: &Passwords,
) -> std::io::Result<()> {
    let message = read_startup(&mut client).await?;
    login(client, message, upstream, passwords).await
}

async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    startup: Vec<u8>,
    upstream: &str,
    passwords: &Passwords,
) -> std::io::Result<()> {
    let user = parameter(&startup, "user").unwrap_or_default();
    let expected = passwords
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&user)
        .cloned();
    let Some(expected) = expected else {
        // Supavisor's answer for a user name that names no tenant.
        return refuse(&mut client, "XX000", "Tenant or user not found").await;
    };
    // AuthenticationCleartextPassword.
    client.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await?;
    let mut tag = [0_u8; 1];
    client.read_exact(&mut tag).await?;
    let length = client.read_u32().await?;
    if tag[0] != b'p' || !(4..=MAX_STARTUP).contains(&length) {
        return refuse(&mut client, "08P01", "expected a password message").await;
    }
    let mut body = vec![0_u8; (length - 4) as usize];
    client.read_exact(&mut body).await?;
    let given = body.split(|&b| b == 0).next().unwrap_or_default();
    if given != expected.as_bytes() {
        return refuse(
            &mut client,
            "28P01",
            &format!("password authentication failed for user \"{user}\""),
        )
        .await;
    }
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&startup).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// A FATAL ErrorResponse, as the server would send it, then the end of the session.
async fn refuse<S: AsyncWrite + Unpin>(
    client: &mut S,
    code: &str,
    message: &str,
) -> std::io::Result<()> {
    let mut fields = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        fields.push(field);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut reply = vec![b'E'];
    reply.extend_from_slice(
        &u32::try_from(fields.len() + 4)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    reply.extend_from_slice(&fields);
    client.write_all(&reply).await?;
    client.shutdown().await
}

/// A startup-phase message (no tag byte): its length word included.
async fn read_startup<S: AsyncRead + Unpin>(client: &mut S) -> std::io::Result<Vec<u8>> {
    let length = client.read_u32().await?;
    if !(8..=MAX_STARTUP).contains(&length) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a PostgreSQL startup message",
        ));
    }
    let mut message = length.to_be_bytes().to_vec();
    message.resize(length as usize, 0);
    client.read_exact(&mut message[4..]).await?;
    Ok(message)
}

fn code_of(message: &[u8]) -> u32 {
    message
        .get(4..8)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_be_bytes)
}

/// A parameter of a StartupMessage (`user`, `database`, ...).
fn parameter(startup: &[u8], name: &str) -> Option<String> {
    let mut fields = startup.get(8..)?.split(|&b| b == 0);
    while let Some(key) = fields.next() {
        let value = fields.next()?;
        if key == name.as_bytes() {
            return Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    None
}
