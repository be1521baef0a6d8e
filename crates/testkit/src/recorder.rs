//! A loopback HTTP or HTTPS server that answers canned responses and records every request,
//! for clients whose real servers the tests cannot run (an OpenID Connect issuer's discovery
//! document, the services' admin APIs).
//!
//! The test arranges answers by method and path ([`Recorder::answer`]); anything else gets a
//! `404`. Every request is recorded with its query, `Authorization` and `Content-Type`
//! headers and body ([`Recorder::requests`]), so a test checks the exact request shapes a
//! client sends. Over HTTPS the certificate is for `localhost` and `127.0.0.1`, signed by a CA
//! made at start ([`Recorder::ca_pem`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::proxmox::server::TlsMaterial;

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The HTTP method.
    pub method: String,
    /// The path, as sent (percent-encoding kept).
    pub path: String,
    /// The query string, as sent, without `?`; empty when there was none.
    pub query: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The body, as text.
    pub body: String,
}

#[derive(Debug, Default)]
struct Shared {
    answers: Mutex<Vec<(String, String, u16, String)>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running recorder, stopped when dropped.
#[derive(Debug)]
pub struct Recorder {
    address: SocketAddr,
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Starts a plain HTTP recorder on a free loopback port. Must be called inside a Tokio
    /// runtime.
    pub async fn http() -> Recorder {
        Self::start(None).await
    }

    /// Starts an HTTPS recorder on a free loopback port. Must be called inside a Tokio runtime.
    pub async fn https() -> Recorder {
        Self::start(Some(TlsMaterial::generate())).await
    }

    async fn start(tls: Option<TlsMaterial>) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind a loopback port for the recorder: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the recorder's socket has no address: {e}"));
        let shared = Arc::new(Shared::default());
        let acceptor = tls
            .as_ref()
            .map(|tls| tokio_rustls::TlsAcceptor::from(Arc::new(tls.server_config())));
        let served = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, shared) = (acceptor.clone(), served.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request| answer(request, shared.clone()));
                    let http = hyper::server::conn::http1::Builder::new();
                    // A client that refuses the certificate or hangs up ends its connection only.
                    let _ = match acceptor {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => {
                                http.serve_connection(TokioIo::new(stream), service).await
                            }
                            Err(_) => return,
                        },
                        None => http.serve_connection(TokioIo::new(stream), service).await,
                    };
                });
            }
        });
        Recorder {
            address,
            ca_pem: tls.map(|tls| tls.ca_pem),
            shared,
            task,
        }
    }

    /// The base address, `http://127.0.0.1:<port>` or `https://localhost:<port>`.
    pub fn url(&self) -> String {
        match self.ca_pem {
            Some(_) => format!("https://localhost:{}", self.address.port()),
            None => format!("http://{}", self.address),
        }
    }

    /// The PEM of the CA that signed an HTTPS recorder's certificate.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Answers `method path` (path without the query) with `status` and the JSON `body`,
    /// from now on.
    pub fn answer(&self, method: &str, path: &str, status: u16, body: &str) {
        lock(&self.shared.answers).push((
            method.to_owned(),
            path.to_owned(),
            status,
            body.to_owned(),
        ));
    }

    /// Answers as PeerTube does to `root`'s sign-in (its local OAuth client, then the password
    /// grant, giving `token`) and to the token's revocation: the way the platform reaches
    /// PeerTube's admin API.
    pub fn answer_peertube_sign_in(&self, token: &str) {
        self.answer(
            "GET",
            "/api/v1/oauth-clients/local",
            200,
            r#"{"client_id":"v1ikx5hnfop4mdpnci8nsqh93c45rldf","client_secret":"AjWiOapPltI6EnsWQwlFarRtLh4u8tDt"}"#,
        );
        let tokens = serde_json::json!({
            "access_token": token, "token_type": "Bearer", "expires_in": 14399, "refresh_token": "r"
        });
        self.answer("POST", "/api/v1/users/token", 200, &tokens.to_string());
        self.answer(
            "POST",
            "/api/v1/users/revoke-token",
            200,
            r#"{"success":true}"#,
        );
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, hyper::http::Error> {
    let header = |name: hyper::header::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut record = RecordedRequest {
        method: request.method().as_str().to_owned(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().unwrap_or_default().to_owned(),
        authorization: header(hyper::header::AUTHORIZATION),
        content_type: header(hyper::header::CONTENT_TYPE),
        body: String::new(),
    };
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    record.body = String::from_utf8_lossy(&body).into_owned();
    let (status, body) = lock(&shared.answers)
        .iter()
        .rev()
        .find(|(method, path, _, _)| *method == record.method && *path == record.path)
        .map_or(
            (404, r#"{"error":"not found"}"#.to_owned()),
            |(_, _, status, body)| (*status, body.clone()),
        );
    lock(&shared.requests).push(record);
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
}
