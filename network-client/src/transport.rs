//! How the gateway talks to orchestrators (§1, §3.6): gRPC and HTTPS over one TLS connection per orchestrator,
//! HTTP/2 negotiated with ALPN.
//!
//! Orchestrators present a self-signed certificate they regenerate on every start, and are identified by the ETH
//! addresses in their `OrchestratorInfo`, not by certificates: like go-livepeer, the client accepts any
//! certificate. It still checks that the server holds the certificate's key (the handshake signature), so the
//! TLS session is at least bound to whoever answered. An `http://` service URI means cleartext HTTP/2 (an
//! orchestrator started with `-httpAddr http://…`).
//!
//! Every call is bounded in time and every response body in size.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use url::Url;

use crate::proto::{self, GET_ORCHESTRATOR_PATH};

/// TCP and TLS connection set-up (go-livepeer: 2 s for segments, 3 s for gRPC).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest `TranscodeResult` or `OrchestratorInfo` accepted.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Largest error text read from a non-200 `/segment` answer.
const MAX_ERROR_BYTES: usize = 4096;
/// Largest rendition downloaded (go-livepeer's `MaxSegSize` is 300 MB; a live rendition is far smaller).
pub const MAX_RENDITION_BYTES: usize = 64 << 20;

/// Why a request to an orchestrator failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The URL cannot address an orchestrator.
    #[error("invalid orchestrator URL {url}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No answer within the deadline.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// The phase that timed out.
        what: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The connection or the HTTP exchange failed.
    #[error("{0}")]
    Http(String),
    /// The gRPC call returned a non-OK status.
    #[error("gRPC {code:?}: {message}")]
    Grpc {
        /// The status code.
        code: tonic::Code,
        /// The orchestrator's message.
        message: String,
    },
    /// The body was larger than allowed.
    #[error("response larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A download answered with an error status.
    #[error("GET {url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// Its status.
        status: StatusCode,
    },
}

/// The answer to `POST /segment`.
#[derive(Debug)]
pub struct SegmentResponse {
    /// The HTTP status: 200 means the body is a `TranscodeResult`; anything else carries a short error text.
    pub status: StatusCode,
    /// The body, bounded by [`MAX_MESSAGE_BYTES`].
    pub body: Bytes,
}

/// Deadlines of one segment request (§3.6).
#[derive(Debug, Clone, Copy)]
pub struct SegmentTimeouts {
    /// Until the response headers arrive (the upload phase).
    pub upload: Duration,
    /// For the whole request.
    pub total: Duration,
}

impl SegmentTimeouts {
    /// go-livepeer's live deadlines: upload `max(2 s, segDur / 2)`, whole request `max(8 s, 4 × segDur)`.
    pub fn for_segment(duration: Duration) -> Self {
        Self {
            upload: (duration / 2).max(Duration::from_secs(2)),
            total: (duration * 4).max(Duration::from_secs(8)),
        }
    }
}

type HyperClient = Client<HttpsConnector<HttpConnector>, tonic::body::Body>;

/// A connection pool to orchestrators: one HTTP/2 connection per orchestrator, shared by gRPC, segment uploads and
/// rendition downloads. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Transport {
    client: HyperClient,
}

impl Default for Transport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport {
    /// A pool that accepts the orchestrators' self-signed certificates.
    pub fn new() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth();
        // hyper-rustls sets ALPN (h2) itself.
        tls.alpn_protocols.clear();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(DIAL_TIMEOUT));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self { client }
    }

    /// `GetOrchestrator` on the orchestrator at `service_uri`.
    pub async fn get_orchestrator(
        &self,
        service_uri: &Url,
        request: proto::OrchestratorRequest,
        timeout: Duration,
    ) -> Result<proto::OrchestratorInfo, TransportError> {
        let origin = origin(service_uri)?;
        let mut grpc = tonic::client::Grpc::with_origin(self.client.clone(), origin)
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let call = async {
            grpc.ready()
                .await
                .map_err(|e| TransportError::Http(error_chain(&e)))?;
            let mut request = tonic::Request::new(request);
            request.set_timeout(timeout);
            let codec = tonic_prost::ProstCodec::<
                proto::OrchestratorRequest,
                proto::OrchestratorInfo,
            >::default();
            grpc.unary(
                request,
                http::uri::PathAndQuery::from_static(GET_ORCHESTRATOR_PATH),
                codec,
            )
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| TransportError::Grpc {
                code: status.code(),
                message: status.message().to_owned(),
            })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| TransportError::Timeout {
                what: "GetOrchestrator",
                after: timeout,
            })?
    }

    /// `POST {transcoder}/segment` with the two credential headers and the MPEG-TS body.
    pub async fn post_segment(
        &self,
        transcoder: &Url,
        seg_data: &str,
        payment: &str,
        body: Bytes,
        timeouts: SegmentTimeouts,
    ) -> Result<SegmentResponse, TransportError> {
        let mut url = transcoder.clone();
        url.set_path(&format!(
            "{}/segment",
            transcoder.path().trim_end_matches('/')
        ));
        let uri = to_uri(&url)?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("Livepeer-Segment", header_value(seg_data)?)
            .header("Livepeer-Payment", header_value(payment)?)
            .header(http::header::CONTENT_TYPE, "video/MP2T")
            .body(tonic::body::Body::new(Full::new(body)))
            .map_err(|e| TransportError::Http(e.to_string()))?;
        let exchange = async {
            let response = tokio::time::timeout(timeouts.upload, self.client.request(request))
                .await
                .map_err(|_| TransportError::Timeout {
                    what: "segment upload",
                    after: timeouts.upload,
                })?
                .map_err(|e| TransportError::Http(error_chain(&e)))?;
            let status = response.status();
            let limit = if status == StatusCode::OK {
                MAX_MESSAGE_BYTES
            } else {
                MAX_ERROR_BYTES
            };
            let body = read_limited(response.into_body(), limit).await?;
            Ok(SegmentResponse { status, body })
        };
        tokio::time::timeout(timeouts.total, exchange)
            .await
            .map_err(|_| TransportError::Timeout {
                what: "segment request",
                after: timeouts.total,
            })?
    }

    /// Downloads one rendition.
    pub async fn download(&self, url: &Url, timeout: Duration) -> Result<Bytes, TransportError> {
        let request = Request::builder()
            .uri(to_uri(url)?)
            .body(tonic::body::Body::empty())
            .map_err(|e| TransportError::Http(e.to_string()))?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| TransportError::Http(error_chain(&e)))?;
            if response.status() != StatusCode::OK {
                return Err(TransportError::Status {
                    url: url.to_string(),
                    status: response.status(),
                });
            }
            read_limited(response.into_body(), MAX_RENDITION_BYTES).await
        };
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| TransportError::Timeout {
                what: "rendition download",
                after: timeout,
            })?
    }
}

async fn read_limited(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, TransportError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(TransportError::TooLarge { limit })
        }
        Err(e) => Err(TransportError::Http(error_chain(&*e))),
    }
}

/// Checks that a service URI can address an orchestrator and returns its origin (`scheme://host:port`).
pub fn origin(service_uri: &Url) -> Result<Uri, TransportError> {
    let bad = |reason| TransportError::BadUrl {
        url: service_uri.to_string(),
        reason,
    };
    if !matches!(service_uri.scheme(), "https" | "http") {
        return Err(bad("the scheme must be https or http"));
    }
    let host = service_uri.host_str().ok_or_else(|| bad("no host"))?;
    let port = service_uri
        .port_or_known_default()
        .ok_or_else(|| bad("no port"))?;
    format!("{}://{}:{}", service_uri.scheme(), host, port)
        .parse()
        .map_err(|_| bad("not a valid URI"))
}

fn to_uri(url: &Url) -> Result<Uri, TransportError> {
    origin(url)?;
    url.as_str().parse().map_err(|_| TransportError::BadUrl {
        url: url.to_string(),
        reason: "not a valid URI",
    })
}

fn header_value(value: &str) -> Result<HeaderValue, TransportError> {
    HeaderValue::from_str(value).map_err(|e| TransportError::Http(e.to_string()))
}

/// An error with its sources, which is where hyper puts the cause ("connection refused").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Accepts any server certificate but checks the handshake signature with it.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_timeouts() {
        let url = Url::parse("https://10.0.0.1:8935").unwrap();
        assert_eq!(origin(&url).unwrap().to_string(), "https://10.0.0.1:8935/");
        assert!(origin(&Url::parse("ftp://x:1").unwrap()).is_err());
        let t = SegmentTimeouts::for_segment(Duration::from_secs(2));
        assert_eq!(t.upload, Duration::from_secs(2));
        assert_eq!(t.total, Duration::from_secs(8));
        let t = SegmentTimeouts::for_segment(Duration::from_secs(6));
        assert_eq!(t.upload, Duration::from_secs(3));
        assert_eq!(t.total, Duration::from_secs(24));
    }
}
