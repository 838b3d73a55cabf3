//! The metrics endpoint behind the exporter-style web configuration, for real: a certificate
//! made by openssl, a bcrypt user, curl as the client.

use std::{net::SocketAddr, path::Path, process::Command};

use vigie::metrics::{Metrics, WebConfig, serve};

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn certificate(dir: &Path) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl (installed by scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// curl's HTTP status for the URL, or 0 when the connection failed.
fn status(args: &[&str], url: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_guard_the_metrics() {
    let dir = std::env::temp_dir().join(format!("vigie-metrics-web-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    certificate(&dir);
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let config = dir.join("web.yml");
    std::fs::write(
        &config,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  prometheus: '{hash}'\n",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        ),
    )
    .unwrap();
    let web = WebConfig::load(&config).unwrap();
    let addr = free_port();
    let metrics = Metrics::new(dir.join("no-pins"));
    let server = tokio::spawn(serve(addr, metrics, web).await.unwrap());

    let url = format!("https://127.0.0.1:{}/metrics", addr.port());
    let ca = dir.join("cert.pem").display().to_string();
    let checks = tokio::task::spawn_blocking(move || {
        let with_ca = ["--cacert", ca.as_str()];
        (
            status(&[&with_ca[..], &["-u", "prometheus:s3cret"]].concat(), &url),
            status(&[&with_ca[..], &["-u", "prometheus:wrong"]].concat(), &url),
            status(&with_ca, &url),
            // Plain HTTP on the TLS port is not served.
            status(
                &["-u", "prometheus:s3cret"],
                &url.replace("https://", "http://"),
            ),
            {
                let out = Command::new("curl")
                    .args([
                        "-s",
                        "--max-time",
                        "5",
                        "--cacert",
                        &ca,
                        "-u",
                        "prometheus:s3cret",
                    ])
                    .arg(&url)
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            },
        )
    })
    .await
    .unwrap();
    server.abort();
    std::fs::remove_dir_all(&dir).unwrap();
    let (good, wrong, anonymous, plain, body) = checks;
    assert_eq!(good, 200);
    assert_eq!(wrong, 401);
    assert_eq!(anonymous, 401);
    assert_ne!(plain, 200);
    assert!(body.contains("vigie_build_info{"), "{body}");
}

#[tokio::test]
async fn a_busy_port_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let metrics = Metrics::new("/nonexistent".into());
    assert!(serve(addr, metrics, WebConfig::default()).await.is_err());
}
