//! vigie-quic: the lab's QUIC server and client (quinn, with rustls and the ring provider), so
//! that the tests see what a real QUIC stack does through vigie.
//!
//! ```text
//! vigie-quic cert --names NAME[,NAME...] --out DIR
//! vigie-quic server --listen ADDR:PORT --cert CERT --key KEY
//! vigie-quic client --connect ADDR:PORT --server-name NAME --ca CERT [--timeout SECS]
//! ```
//! `cert` writes a self-signed certificate for the names (`DIR/cert.pem`, `DIR/key.pem`).
//! `server` prints `ready ADDR` on stdout once it listens, then one line per connection
//! (`connection FROM NAME`), and echoes every bidirectional stream until killed. `client`
//! connects with that server name, trusting only `CERT`, sends a message on a stream and reads
//! the echo, and prints one JSON line: `{"connected": bool, "millis": handshake time or null,
//! "echoed": bool, "error": text or null}` ("timeout" when the handshake did not complete
//! within `--timeout`); it exits 0 either way. Usage and setup errors exit 2.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use quinn::{ClientConfig, Endpoint, ServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde_json::json;

/// What the client sends on its stream; the server sends it back.
const MESSAGE: &[u8] = b"vigie-quic echo";
/// The most a stream may carry (the server reads it whole before echoing).
const STREAM_LIMIT: usize = 64 * 1024;
/// How long the client lets its close reach the server before it exits.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

#[derive(Parser)]
#[command(name = "vigie-quic", about = "The lab's QUIC server and client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a self-signed certificate and its key (cert.pem, key.pem) into a directory.
    Cert {
        /// The names the certificate covers, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        names: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Accepts connections and echoes their bidirectional streams.
    Server {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Connects once and prints what happened as one JSON line.
    Client {
        #[arg(long)]
        connect: SocketAddr,
        #[arg(long)]
        server_name: String,
        /// The only certificate trusted.
        #[arg(long)]
        ca: PathBuf,
        /// Seconds the handshake may take (and the echo after it).
        #[arg(long, default_value_t = 4.0)]
        timeout: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Cert { names, out } => cert(names, &out),
        Command::Server { listen, cert, key } => {
            runtime().and_then(|rt| rt.block_on(server(listen, &cert, &key)))
        }
        Command::Client {
            connect,
            server_name,
            ca,
            timeout,
        } => Duration::try_from_secs_f64(timeout)
            .context("--timeout must be a positive number of seconds")
            .and_then(|timeout| {
                let rt = runtime()?;
                let config = client_config(&ca)?;
                let report = rt.block_on(client(config, connect, &server_name, timeout))?;
                println!("{report}");
                Ok(())
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigie-quic: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn cert(names: Vec<String>, out: &std::path::Path) -> anyhow::Result<()> {
    let made = rcgen::generate_simple_self_signed(names).context("making the certificate")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (cert, key) = (out.join("cert.pem"), out.join("key.pem"));
    std::fs::write(&cert, made.cert.pem())
        .with_context(|| format!("writing {}", cert.display()))?;
    std::fs::write(&key, made.signing_key.serialize_pem())
        .with_context(|| format!("writing {}", key.display()))
}

async fn server(
    listen: SocketAddr,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<()> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let config = ServerConfig::with_single_cert(chain, key).context("the server's TLS setup")?;
    let endpoint =
        Endpoint::server(config, listen).with_context(|| format!("listening on {listen}"))?;
    println!("ready {}", endpoint.local_addr()?);
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let from = incoming.remote_address();
            let Ok(connection) = incoming.await else {
                return;
            };
            let name = connection
                .handshake_data()
                .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|d| d.server_name)
                .unwrap_or_else(|| "-".to_owned());
            println!("connection {from} {name}");
            while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                tokio::spawn(async move {
                    if let Ok(data) = recv.read_to_end(STREAM_LIMIT).await
                        && send.write_all(&data).await.is_ok()
                    {
                        let _ = send.finish();
                        // Until the client has read it all (or gone).
                        let _ = send.stopped().await;
                    }
                });
            }
        });
    }
    Ok(())
}

fn client_config(ca: &std::path::Path) -> anyhow::Result<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("parsing {}", ca.display()))?)
            .context("trusting the certificate")?;
    }
    ClientConfig::with_root_certificates(Arc::new(roots)).context("the client's TLS setup")
}

/// One connection: its report as a JSON line.
async fn client(
    config: ClientConfig,
    to: SocketAddr,
    server_name: &str,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let bind: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = Endpoint::client(bind).context("opening the client's socket")?;
    endpoint.set_default_client_config(config);
    let start = Instant::now();
    let connecting = match endpoint.connect(to, server_name) {
        Ok(c) => c,
        Err(e) => bail!("connecting to {to} as {server_name}: {e}"),
    };
    let connection = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => return Ok(report(None, false, Some("timeout"))),
        Ok(Err(e)) => return Ok(report(None, false, Some(&e.to_string()))),
        Ok(Ok(c)) => c,
    };
    let millis = start.elapsed().as_secs_f64() * 1000.0;
    let echo = tokio::time::timeout(timeout, echo(&connection)).await;
    let (echoed, error) = match echo {
        Err(_) => (false, Some("echo: timeout".to_owned())),
        Ok(Err(e)) => (false, Some(format!("echo: {e:#}"))),
        Ok(Ok(same)) => (same, (!same).then(|| "echo: different bytes".to_owned())),
    };
    connection.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
    Ok(report(Some(millis), echoed, error.as_deref()))
}

/// Sends the message on a new stream: whether the same bytes came back.
async fn echo(connection: &quinn::Connection) -> anyhow::Result<bool> {
    let (mut send, mut recv) = connection.open_bi().await?;
    send.write_all(MESSAGE).await?;
    send.finish()?;
    let back = recv.read_to_end(STREAM_LIMIT).await?;
    Ok(back == MESSAGE)
}

fn report(millis: Option<f64>, echoed: bool, error: Option<&str>) -> serde_json::Value {
    json!({
        "connected": millis.is_some(),
        "millis": millis,
        "echoed": echoed,
        "error": error,
    })
}
