//! An in-process HTTP(S) server for tests of our HTTP clients.
//!
//! Each server runs on its own thread with its own runtime, so it serves both async
//! tests and blocking ones (a test that spawns one of our binaries and waits for it).
//! Dropping the server stops it at once, in-flight requests included.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tempfile::NamedTempFile;
use tokio::sync::oneshot;

/// A running server.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    scheme: &'static str,
    ca: Option<(String, NamedTempFile)>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Serves `router` over plain HTTP on 127.0.0.1.
    pub fn http(router: Router) -> TestServer {
        TestServer::start(router, None)
    }

    /// Serves `router` over HTTPS on 127.0.0.1, with a certificate for `localhost` and
    /// `127.0.0.1` issued by a fresh test CA (see [`TestServer::ca_pem_path`]).
    pub fn https(router: Router) -> TestServer {
        TestServer::start(router, Some(TlsMaterial::generate()))
    }

    /// `http(s)://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// `https://localhost:PORT` + `path`, for checks of host-name verification.
    pub fn localhost_url(&self, path: &str) -> String {
        format!("{}://localhost:{}{path}", self.scheme, self.addr.port())
    }

    /// The test CA's certificate in PEM, for clients that must trust the server
    /// (`SSL_CERT_FILE` for a child process).
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.ca.as_ref().map(|(_, file)| file.path())
    }

    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(|(pem, _)| pem.as_str())
    }

    fn start(router: Router, tls: Option<TlsMaterial>) -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let acceptor = tls.as_ref().map(TlsMaterial::acceptor);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("test server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    () = serve(listener, router, acceptor) => {}
                    _ = shutdown_rx => {}
                }
            });
        });
        let ca = tls.map(|tls| {
            let mut file = NamedTempFile::new().expect("CA file");
            file.write_all(tls.ca_pem.as_bytes()).expect("write CA file");
            (tls.ca_pem, file)
        });
        TestServer {
            addr,
            scheme: if ca.is_some() { "https" } else { "http" },
            ca,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    let Some(acceptor) = acceptor else {
        let _ = axum::serve(listener, router).await;
        return;
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else { return };
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

struct TlsMaterial {
    ca_pem: String,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TlsMaterial {
    fn generate() -> TlsMaterial {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "elastic-ci test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let leaf_key = rcgen::KeyPair::generate().expect("server key");
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("server certificate");
        TlsMaterial {
            ca_pem: ca.pem(),
            cert_der: leaf.der().clone(),
            key_der: leaf_key.serialize_der(),
        }
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let key = rustls::pki_types::PrivateKeyDer::try_from(self.key_der.clone())
            .expect("server key DER");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![self.cert_der.clone()], key)
        .expect("server TLS config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// How long `/slow` waits before answering: longer than any client timeout in tests.
pub const SLOW_RESPONSE: Duration = Duration::from_secs(30);

/// Routes for download tests:
/// - `/file`: 200 with `body`;
/// - `/missing`: 404; `/error`: 500;
/// - `/redirect`: 302 to `/file`; `/redirect-loop`: 302 to itself;
/// - `/slow`: answers only after [`SLOW_RESPONSE`].
pub fn download_routes(body: Vec<u8>) -> Router {
    let body = Arc::new(body);
    let slow_body = body.clone();
    Router::new()
        .route("/file", get(move || async move { (StatusCode::OK, body.as_ref().clone()) }))
        .route("/missing", get(|| async { (StatusCode::NOT_FOUND, "no such file") }))
        .route("/error", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }))
        .route("/redirect", get(|| async { redirect("/file") }))
        .route("/redirect-loop", get(|| async { redirect("/redirect-loop") }))
        .route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(SLOW_RESPONSE).await;
                (StatusCode::OK, slow_body.as_ref().clone())
            }),
        )
}

/// Serves fixed files by path, as a download mirror would: `files` maps a path (such as
/// `/releases/v1/tool`) to its body, and `failing` lists paths that answer 500 (a
/// mirror in trouble). Every other path is a 404.
pub fn file_routes(files: BTreeMap<String, Vec<u8>>, failing: BTreeSet<String>) -> Router {
    let files = Arc::new(files);
    let failing = Arc::new(failing);
    Router::new().fallback(move |uri: Uri| {
        let (files, failing) = (files.clone(), failing.clone());
        async move {
            let path = uri.path();
            if failing.contains(path) {
                return (StatusCode::INTERNAL_SERVER_ERROR, b"mirror failure".to_vec());
            }
            match files.get(path) {
                Some(body) => (StatusCode::OK, body.clone()),
                None => (StatusCode::NOT_FOUND, b"no such file".to_vec()),
            }
        }
    })
}

fn redirect(location: &'static str) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, header::HeaderValue::from_static(location));
    (StatusCode::FOUND, headers)
}
