//! The HTTP(S) endpoint: `/metrics` only, behind the optional TLS and basic authentication of
//! the web configuration.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info};

use super::{Metrics, WebConfig};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening on {0} for metrics: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// Binds `addr` now (so that a busy port fails the start-up) and returns the accept loop.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    web: WebConfig,
) -> Result<impl Future<Output = ()>, ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Bind(addr, e))?;
    let scheme = if web.tls.is_some() { "https" } else { "http" };
    info!("metrics at {scheme}://{addr}/metrics");
    let web = Arc::new(web);
    Ok(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let web = Arc::clone(&web);
            tokio::spawn(async move {
                let tls = web.tls.clone();
                let service = service_fn(move |req| {
                    let response = respond(&req, &metrics, &web);
                    async move { Ok::<_, Infallible>(response) }
                });
                let result = if let Some(tls) = tls {
                    match tokio_rustls::TlsAcceptor::from(tls).accept(stream).await {
                        Ok(stream) => {
                            http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                        Err(e) => return debug!(%peer, "TLS handshake failed: {e}"),
                    }
                } else {
                    http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                };
                if let Err(e) = result {
                    debug!(%peer, "metrics connection: {e}");
                }
            });
        }
    })
}

fn respond(req: &Request<Incoming>, metrics: &Metrics, web: &WebConfig) -> Response<Full<Bytes>> {
    let text = |status, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r
    };
    if !web.authorised(
        req.headers()
            .get(header::AUTHORIZATION)
            .map(hyper::header::HeaderValue::as_bytes),
    ) {
        let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"vigie\""),
        );
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(metrics.render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/" => text(StatusCode::OK, "vigie: metrics at /metrics\n"),
        _ => text(StatusCode::NOT_FOUND, "Not found\n"),
    }
}
