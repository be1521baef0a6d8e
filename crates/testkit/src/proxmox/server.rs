//! The simulator's HTTPS front: TLS material made at start, the accept loop, token checks,
//! parameter checks against the schema, injected faults, the `{"data": …}` envelope and
//! Proxmox's error shape, and the request record.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::api::{self, ApiError, Call};
use super::schema::ApiSchema;
use super::{Fault, FaultAction, RecordedRequest, Shared, SimOptions, lock};

/// The CA and the server certificate it signed.
#[derive(Debug)]
pub(crate) struct TlsMaterial {
    pub ca_pem: String,
    pub fingerprint: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl TlsMaterial {
    /// A fresh CA and a server certificate for `127.0.0.1` and `localhost`.
    pub fn generate() -> Self {
        let fail =
            |e: rcgen::Error| -> ! { panic!("cannot make the simulator's certificates: {e}") };
        let ca_key = KeyPair::generate().unwrap_or_else(|e| fail(e));
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail(e));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "Proxmox Virtual Environment (simulated)",
        );
        let ca_cert = ca_params.self_signed(&ca_key).unwrap_or_else(|e| fail(e));
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap_or_else(|e| fail(e));
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap_or_else(|e| fail(e));
        let cert = params.signed_by(&key, &issuer).unwrap_or_else(|e| fail(e));
        let fingerprint = Sha256::digest(cert.der())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        Self {
            ca_pem: ca_cert.pem(),
            fingerprint,
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }

    /// The server side: the certificate and its key (shared with [`crate::recorder`]).
    pub(crate) fn server_config(&self) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth().with_single_cert(
                    vec![CertificateDer::from(self.cert_der.clone())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
                )
            })
            .unwrap_or_else(|e| panic!("cannot set up the simulator's TLS: {e}"))
    }
}

/// Binds a free loopback port and serves on it until the returned task is aborted.
pub(crate) async fn serve(
    tls: &TlsMaterial,
    shared: Arc<Shared>,
    options: SimOptions,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("cannot bind a loopback port for the simulator: {e}"));
    let address = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("the simulator's socket has no address: {e}"));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls.server_config()));
    let options = Arc::new(options);
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, shared, options) = (acceptor.clone(), shared.clone(), options.clone());
            connections.spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request| {
                    answer(request, shared.clone(), options.clone())
                });
                // A dropped connection (injected or the client's) ends the connection only.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, task)
}

/// Why the connection is closed without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

fn decode(text: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn percent_decode(segment: &str) -> String {
    form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Takes the first fault matching the request, counting it down.
fn take_fault(shared: &Shared, method: &str, path: &str) -> Option<FaultAction> {
    let mut faults = lock(&shared.faults);
    let at = faults.iter().position(|f: &Fault| {
        f.method == method && path.ends_with(&f.path_suffix) && f.times > 0
    })?;
    faults[at].times -= 1;
    let action = faults[at].action.clone();
    if faults[at].times == 0 {
        faults.remove(at);
    }
    Some(action)
}

async fn answer(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    options: Arc<SimOptions>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let method = request.method().as_str().to_owned();
    let raw_path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let authorization = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let params = if matches!(method.as_str(), "POST" | "PUT") {
        decode(&String::from_utf8_lossy(&body))
    } else {
        decode(&query)
    };
    let path: String = raw_path
        .strip_prefix("/api2/json")
        .unwrap_or(&raw_path)
        .split('/')
        .map(percent_decode)
        .collect::<Vec<_>>()
        .join("/");
    let mut record = RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        params: params.clone(),
        status: None,
        data: None,
    };
    let fault = take_fault(&shared, &method, &path);
    if let Some(FaultAction::Delay(delay)) = &fault {
        tokio::time::sleep(*delay).await;
    }
    let drop_after = matches!(fault, Some(FaultAction::DropAfter));
    let outcome = match fault {
        Some(FaultAction::DropBefore) => {
            lock(&shared.requests).push(record);
            return Err(Dropped);
        }
        Some(FaultAction::ServerError(message)) => Err(ApiError::server(message)),
        _ => respond(
            &shared,
            &options,
            &method,
            &path,
            &params,
            authorization.as_deref(),
        ),
    };
    if drop_after {
        lock(&shared.requests).push(record);
        return Err(Dropped);
    }
    let response = match outcome {
        Ok(data) => {
            record.status = Some(200);
            record.data = Some(data.clone());
            envelope(200, None, json!({ "data": data }))
        }
        Err(error) => {
            record.status = Some(error.status);
            let mut body = json!({ "data": null });
            if let Some(errors) = &error.errors {
                body["errors"] = json!(errors);
            }
            envelope(error.status, Some(&error.message), body)
        }
    };
    lock(&shared.requests).push(record);
    Ok(response)
}

/// Authenticates, checks the parameters against the schema, and acts.
fn respond(
    shared: &Shared,
    options: &SimOptions,
    method: &str,
    path: &str,
    params: &BTreeMap<String, String>,
    authorization: Option<&str>,
) -> Result<Value, ApiError> {
    let expected = format!("PVEAPIToken={}={}", options.token_id, options.token_secret);
    if authorization != Some(expected.as_str()) {
        return Err(ApiError {
            status: 401,
            message: if authorization.is_some() {
                "authentication failure".to_owned()
            } else {
                "No ticket".to_owned()
            },
            errors: None,
        });
    }
    let operation = ApiSchema::get()
        .operation(method, path)
        .map_err(|message| ApiError {
            status: 501,
            message,
            errors: None,
        })?;
    let errors = operation.check_parameters(params);
    if !errors.is_empty() {
        return Err(ApiError::parameters(errors));
    }
    let user = options.token_id.as_str();
    let call = Call {
        method,
        segments: path.trim_matches('/').split('/').collect(),
        params,
        user,
    };
    api::handle(&mut lock(&shared.state), options, &call)
}

/// A JSON answer with `status`, the error message (if any) as the reason phrase.
fn envelope(status: u16, reason: Option<&str>, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    if let Some(reason) = reason {
        // Proxmox puts the message on the status line; it is one line of printable text.
        let line: String = reason
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .collect();
        if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(line.into_bytes()) {
            response.extensions_mut().insert(phrase);
        }
    }
    response
}
