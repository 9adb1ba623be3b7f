//! A Livepeer orchestrator for tests (§8 of the protocol reference): the orchestrator side of the protocol,
//! served the way go-livepeer serves it, with its checks, and real renditions.
//!
//! - One TLS port with a self-signed certificate made at start, ALPN `h2` and `http/1.1`. gRPC
//!   (`/net.Orchestrator/GetOrchestrator`) and HTTP (`POST /segment`, `GET /stream/…`) share it, told apart by
//!   `Content-Type: application/grpc` as go-livepeer's `ServeHTTP` does.
//! - `GetOrchestrator` checks the InfoSig and capacity, then hands out an auth token (HMAC of session id and
//!   expiry), ticket params (see [`recipient`]) and the price.
//! - `POST /segment` parses the payment (402), checks the segment credentials (403: signature over `flatten`,
//!   capabilities, auth token), takes the tickets (400 with the recipient's error, or `Insufficient balance`),
//!   checks the body hash (403), answers 200 at once, transcodes with a real [`Transcoder`], keeps the renditions
//!   under `/stream/{session}/{profile}/{seq}.ts` (the last 12 per rendition), debits price × pixels and writes
//!   the `TranscodeResult` with fresh ticket params.
//!
//! Faults ([`Faults`]) make it reject payments, expire ticket params, stall, fail transcoding, raise its price,
//! or die ([`TestOrchestrator::kill`]).

pub mod recipient;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, U256, keccak256};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::Zero;
use prost::Message;
use rand::Rng;
use sha2::Sha256;
use studio_media_core::h264::level_for;
use studio_media_core::hls::ts::TsMuxer;
use studio_media_core::mpegts;
use studio_media_core::packet::{PacketKind, Track};
use studio_media_core::segment::Segment;
use studio_media_core::transcode::{
    FrameRate, Gop, H264Profile, Rendition, RenditionProfile, TranscodeJob, Transcoder,
};
use studio_network_client::capabilities::{CapabilitySet, compatible};
use studio_network_client::credentials::{SegmentClaim, verify_info_sig};
use studio_network_client::orchestrator::{read_ticket_params, ticket_params_message};
use studio_network_client::pm::{EthSigner, Payment, PriceInfo, PricePerPixel, TicketSenderParams};
use studio_network_client::proto::{self, transcode_result, video_profile};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use recipient::{Recipient, RecipientError, TicketEconomics};

/// Renditions kept per rendition path (go-livepeer's memory store).
const KEPT_PER_RENDITION: usize = 12;
/// Largest segment accepted (go-livepeer's `MaxSegSize`).
const MAX_SEGMENT_BYTES: usize = 300 << 20;
/// Longest segment accepted.
const MAX_SEGMENT_DURATION_MS: i32 = 5 * 60 * 1000;

/// How the orchestrator is set up.
#[derive(Clone)]
pub struct OrchestratorConfig {
    /// Check signatures and take tickets (on-chain); off-chain it checks neither and quotes no price.
    pub on_chain: bool,
    /// The price quoted.
    pub price: PriceInfo,
    /// The EV wanted per ticket (`-ticketEV`).
    pub ticket_ev: U256,
    /// Face value = redeem gas × gas price × 100, unless that is below the EV.
    pub gas_price: U256,
    /// Sessions at once before `OrchestratorCapped`.
    pub max_sessions: usize,
    /// Auth token lifetime (30 minutes in go-livepeer).
    pub auth_token_ttl: Duration,
    /// Makes the renditions.
    pub transcoder: Arc<dyn Transcoder>,
}

impl OrchestratorConfig {
    /// An on-chain orchestrator at `price` wei per pixel.
    pub fn on_chain(price: PriceInfo, transcoder: Arc<dyn Transcoder>) -> Self {
        Self {
            on_chain: true,
            price,
            ticket_ev: U256::from(8_000_000_000u64),
            gas_price: U256::from(10_000_000u64),
            max_sessions: 10,
            auth_token_ttl: Duration::from_secs(30 * 60),
            transcoder,
        }
    }

    /// An off-chain orchestrator (go-livepeer's default network): no signatures, no tickets.
    pub fn off_chain(transcoder: Arc<dyn Transcoder>) -> Self {
        Self {
            on_chain: false,
            ..Self::on_chain(
                PriceInfo {
                    price_per_unit: 0,
                    pixels_per_unit: 1,
                },
                transcoder,
            )
        }
    }
}

/// Faults to inject, changeable while the orchestrator runs.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Every payment is refused (400).
    pub reject_payments: bool,
    /// `/segment` answers only after this long (a stalled orchestrator).
    pub stall: Option<Duration>,
    /// Transcoding fails (200 with `TranscodeResult.error`).
    pub fail_transcoding: bool,
}

/// What the orchestrator saw and did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrchestratorStats {
    /// `GetOrchestrator` answers given.
    pub offers: u64,
    /// Segments transcoded.
    pub segments: u64,
    /// Tickets credited.
    pub tickets: u64,
    /// Winning tickets among them.
    pub winning_tickets: u64,
    /// Their expected value, in wei.
    pub ev_credited: BigRational,
    /// Output pixels billed.
    pub pixels: u64,
    /// Price × pixels debited, in wei.
    pub debited: BigRational,
    /// The errors sent back, in order.
    pub refusals: Vec<String>,
}

struct Session {
    expires: SystemTime,
    /// Whether segments came: only sessions in use count against capacity.
    active: bool,
    /// The price pinned by the session's first payment.
    price: Option<PriceInfo>,
}

struct State {
    config: OrchestratorConfig,
    uri: String,
    node: EthSigner,
    auth_secret: [u8; 32],
    faults: Faults,
    price: PriceInfo,
    recipient: Recipient,
    sessions: HashMap<String, Session>,
    results: HashMap<String, VecDeque<(String, Bytes)>>,
    stats: OrchestratorStats,
}

/// A running test orchestrator. Dropping it stops it.
pub struct TestOrchestrator {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    alive: watch::Sender<bool>,
}

impl TestOrchestrator {
    /// Starts an orchestrator on a free loopback port.
    pub async fn start(config: OrchestratorConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let mut rng = rand::thread_rng();
        let recipient_key = EthSigner::random();
        let economics = TicketEconomics {
            ticket_ev: config.ticket_ev,
            redeem_gas: U256::from(1_200_000u64),
            gas_price: config.gas_price,
            tx_cost_multiplier: U256::from(100u64),
            max_float: None,
        };
        let state = State {
            uri: format!("https://{address}"),
            node: EthSigner::random(),
            auth_secret: rng.r#gen(),
            faults: Faults::default(),
            price: config.price,
            recipient: Recipient::new(rng.r#gen(), recipient_key.address(), economics),
            sessions: HashMap::new(),
            results: HashMap::new(),
            stats: OrchestratorStats::default(),
            config,
        };
        let state = Arc::new(Mutex::new(state));
        let (alive, _) = watch::channel(true);
        let acceptor = TlsAcceptor::from(Arc::new(tls_config()));
        tokio::spawn(serve(listener, acceptor, state.clone(), alive.subscribe()));
        Ok(Self {
            address,
            state,
            alive,
        })
    }

    /// The service URI (`https://127.0.0.1:port`).
    pub fn uri(&self) -> String {
        format!("https://{}", self.address)
    }

    /// The on-chain address tickets are made out to.
    pub fn recipient(&self) -> Address {
        self.lock().recipient.address
    }

    /// The price currently quoted.
    pub fn price(&self) -> PriceInfo {
        self.lock().price
    }

    /// Quotes a new price from the next offer on (an orchestrator raising its price mid-stream).
    pub fn set_price(&self, price: PriceInfo) {
        self.lock().price = price;
    }

    /// Sets the faults to inject.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Moves the orchestrator's L1 block view past the expiration of every ticket params handed out so far:
    /// their tickets are refused with `TicketParams expired` until the gateway fetches new ones.
    pub fn expire_ticket_params(&self) {
        self.lock().recipient.last_seen_block += 2 * recipient::PARAMS_VALIDITY_BLOCKS;
    }

    /// What it saw and did so far.
    pub fn stats(&self) -> OrchestratorStats {
        self.lock().stats.clone()
    }

    /// The credit `sender` has with the session `session_id`, in wei.
    pub fn balance(&self, sender: Address, session_id: &str) -> BigRational {
        self.lock().recipient.balance(sender, session_id)
    }

    /// Dies: stops listening and drops every connection, in the middle of whatever it was doing.
    pub fn kill(&self) {
        let _ = self.alive.send(false);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for TestOrchestrator {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tls_config() -> rustls::ServerConfig {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("a self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("default TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .expect("the generated key matches its certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<Mutex<State>>,
    mut alive: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = alive.wait_for(|alive| !alive) => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        // As go-livepeer's server does: small writes must not wait out the peer's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        let mut alive = alive.clone();
        tokio::spawn(async move {
            let connection = async {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |request| route(state.clone(), request));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            };
            tokio::select! {
                () = connection => {}
                _ = alive.wait_for(|alive| !alive) => {}
            }
        });
    }
}

type Body = tonic::body::Body;

fn text(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(Body::new(Full::new(Bytes::from(format!("{message}\n")))))
        .expect("a valid response")
}

async fn route(
    state: Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc && request.uri().path() == proto::GET_ORCHESTRATOR_PATH {
        let service = tower::service_fn(move |req: tonic::Request<proto::OrchestratorRequest>| {
            let state = state.clone();
            async move { get_orchestrator(&state, req.into_inner()).map(tonic::Response::new) }
        });
        let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<
            proto::OrchestratorInfo,
            proto::OrchestratorRequest,
        >::default());
        return Ok(grpc.unary(service, request).await);
    }
    let path = request.uri().path().to_owned();
    Ok(match (request.method(), path.as_str()) {
        (&Method::POST, "/segment") => segment(state, request).await,
        (&Method::GET, p) if p.starts_with("/stream/") => {
            let found = {
                let state = lock(&state);
                let (dir, _) = p.rsplit_once('/').unwrap_or((p, ""));
                state.results.get(dir).and_then(|kept| {
                    kept.iter()
                        .find(|(key, _)| key == p)
                        .map(|(_, b)| b.clone())
                })
            };
            match found {
                Some(bytes) => Response::builder()
                    .header(http::header::CONTENT_TYPE, "video/mp2t")
                    .body(Body::new(Full::new(bytes)))
                    .expect("a valid response"),
                None => text(StatusCode::NOT_FOUND, "not found"),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    })
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The capabilities of an orchestrator with go-livepeer's defaults.
fn node_capabilities() -> proto::Capabilities {
    proto::Capabilities {
        bitstring: vec![0x4005FFF],
        mandatories: CapabilitySet::of([studio_network_client::capabilities::id::AUTH_TOKEN])
            .words()
            .to_vec(),
        version: "test-orchestrator".into(),
        ..Default::default()
    }
}

fn get_orchestrator(
    state: &Mutex<State>,
    request: proto::OrchestratorRequest,
) -> Result<proto::OrchestratorInfo, tonic::Status> {
    let mut state = lock(state);
    let sender = if request.address.len() == 20 {
        Address::from_slice(&request.address)
    } else {
        Address::ZERO
    };
    if state.config.on_chain && verify_info_sig(sender, &request.sig).is_err() {
        state
            .stats
            .refusals
            .push("orchestrator req sig check failed".into());
        return Err(tonic::Status::unknown("orchestrator req sig check failed"));
    }
    let now = SystemTime::now();
    state.sessions.retain(|_, s| s.expires > now);
    if state.sessions.values().filter(|s| s.active).count() >= state.config.max_sessions {
        state.stats.refusals.push("OrchestratorCapped".into());
        return Err(tonic::Status::unknown("OrchestratorCapped"));
    }
    let session_id = format!("{:08x}", rand::thread_rng().r#gen::<u32>());
    let expires = now + state.config.auth_token_ttl;
    state.sessions.insert(
        session_id.clone(),
        Session {
            expires,
            active: false,
            price: None,
        },
    );
    let auth_token = auth_token(&state.auth_secret, &session_id, unix(expires));
    let info = offer(&mut state, sender, auth_token)
        .map_err(|e| tonic::Status::unknown(format!("{e:?}")))?;
    state.stats.offers += 1;
    Ok(info)
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `HMAC-SHA256(secret, session_id ‖ bigint(expiration).Bytes())`.
fn auth_token(secret: &[u8; 32], session_id: &str, expiration: i64) -> proto::AuthToken {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(session_id.as_bytes());
    mac.update(&proto::uint_bytes(U256::from(expiration.max(0) as u64)));
    proto::AuthToken {
        token: mac.finalize().into_bytes().to_vec(),
        session_id: session_id.to_owned(),
        expiration,
    }
}

/// A fresh `OrchestratorInfo` for `sender` with `auth_token`: new ticket params every time.
fn offer(
    state: &mut State,
    sender: Address,
    auth_token: proto::AuthToken,
) -> Result<proto::OrchestratorInfo, RecipientError> {
    let mut info = proto::OrchestratorInfo {
        transcoder: state.uri.clone(),
        address: if state.config.on_chain {
            state.node.address().to_vec()
        } else {
            vec![0; 20]
        },
        capabilities: Some(node_capabilities()),
        ..Default::default()
    };
    if state.config.on_chain {
        let seed: [u8; 32] = rand::thread_rng().r#gen();
        let terms = state
            .recipient
            .terms(sender, state.price, seed, &auth_token.session_id)?;
        info.ticket_params = Some(ticket_params_message(&terms.params));
        info.price_info = Some(proto::PriceInfo {
            price_per_unit: state.price.price_per_unit,
            pixels_per_unit: state.price.pixels_per_unit,
            ..Default::default()
        });
    }
    info.auth_token = Some(auth_token);
    Ok(info)
}

/// Reads the payment as the orchestrator does: the params from field 1, the creation round from the top-level
/// field 3 (which must be there), values rather than byte strings.
fn read_payment(p: &proto::Payment) -> Option<Payment> {
    let expiration = p.expiration_params.as_ref()?;
    let ticket_params = read_ticket_params(p.ticket_params.as_ref()?, Some(expiration)).ok()?;
    let price = p.expected_price.as_ref()?;
    Some(Payment {
        ticket_params,
        sender: (p.sender.len() == 20).then(|| Address::from_slice(&p.sender))?,
        expected_price: PriceInfo {
            price_per_unit: price.price_per_unit,
            pixels_per_unit: price.pixels_per_unit,
        },
        tickets: p
            .ticket_sender_params
            .iter()
            .map(|t| {
                Some(TicketSenderParams {
                    sender_nonce: t.sender_nonce,
                    sig: studio_network_client::pm::EthSignature::parse(&t.sig).ok()?,
                })
            })
            .collect::<Option<Vec<_>>>()?,
    })
}

/// go-livepeer's error texts for ticket refusals.
fn refusal_text(error: &RecipientError) -> &'static str {
    match error {
        RecipientError::RecipientMismatch => "invalid ticket recipient",
        RecipientError::ZeroSender => "invalid ticket sender",
        RecipientError::InvalidRecipientRand => {
            "invalid recipientRand for ticket recipientRandHash"
        }
        RecipientError::BadPrice => "invalid expected price",
        RecipientError::BadSignature => "invalid ticket signature",
        RecipientError::NonceReused => "invalid ticket senderNonce",
        RecipientError::TooManyValues => "too many values",
        RecipientError::ParamsExpired => "TicketParams expired",
        RecipientError::InsufficientSenderReserve => "insufficient sender reserve",
    }
}

fn refuse(state: &Arc<Mutex<State>>, status: StatusCode, message: &str) -> Response<Body> {
    lock(state).stats.refusals.push(message.to_owned());
    text(status, message)
}

fn decode_header<M: Message + Default>(request: &Request<Incoming>, name: &str) -> Option<M> {
    let value = request
        .headers()
        .get(name)
        .map_or(Some(""), |v| v.to_str().ok())?;
    let bytes = STANDARD.decode(value).ok()?;
    M::decode(bytes.as_slice()).ok()
}

async fn segment(state: Arc<Mutex<State>>, request: Request<Incoming>) -> Response<Body> {
    let Some(payment) = decode_header::<proto::Payment>(&request, "Livepeer-Payment") else {
        return refuse(
            &state,
            StatusCode::PAYMENT_REQUIRED,
            "Could not parse payment",
        );
    };
    let Some(seg) = decode_header::<proto::SegData>(&request, "Livepeer-Segment") else {
        return refuse(
            &state,
            StatusCode::FORBIDDEN,
            "Could not verify segment creds",
        );
    };
    let on_chain = lock(&state).config.on_chain;
    let sender = if payment.sender.len() == 20 {
        Address::from_slice(&payment.sender)
    } else {
        Address::ZERO
    };
    let profiles = if !seg.full_profiles3.is_empty() {
        seg.full_profiles3.clone()
    } else if !seg.full_profiles2.is_empty() {
        seg.full_profiles2.clone()
    } else {
        seg.full_profiles.clone()
    };
    if on_chain {
        let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        let claim = SegmentClaim {
            manifest_id: std::str::from_utf8(&seg.manifest_id).unwrap_or_default(),
            seq: seg.seq.max(0) as u64,
            data_hash: if seg.hash.len() == 32 {
                B256::from_slice(&seg.hash)
            } else {
                B256::ZERO
            },
            profile_names: &names,
        };
        if std::str::from_utf8(&seg.manifest_id).is_err() || claim.verify(sender, &seg.sig).is_err()
        {
            return refuse(&state, StatusCode::FORBIDDEN, "ErrSegSig");
        }
    }
    let capabilities = seg.capabilities.clone().unwrap_or_default();
    if !compatible(&capabilities, &node_capabilities()) {
        return refuse(&state, StatusCode::FORBIDDEN, "incompatible capabilities");
    }
    if seg.duration > MAX_SEGMENT_DURATION_MS || seg.duration < 0 {
        return refuse(
            &state,
            StatusCode::FORBIDDEN,
            "segment duration out of range",
        );
    }
    let Some(token) = seg.auth_token.clone() else {
        return refuse(&state, StatusCode::FORBIDDEN, "missing auth token");
    };
    let info = {
        let mut st = lock(&state);
        let expected = auth_token(&st.auth_secret, &token.session_id, token.expiration);
        if expected.token != token.token {
            drop(st);
            return refuse(&state, StatusCode::FORBIDDEN, "invalid auth token");
        }
        let Some(session) = st
            .sessions
            .get(&token.session_id)
            .filter(|_| token.expiration > unix(SystemTime::now()))
        else {
            drop(st);
            return refuse(&state, StatusCode::FORBIDDEN, "expired auth token");
        };
        if !session.active {
            if st.sessions.values().filter(|s| s.active).count() >= st.config.max_sessions {
                drop(st);
                return refuse(&state, StatusCode::FORBIDDEN, "OrchestratorCapped");
            }
            st.sessions
                .get_mut(&token.session_id)
                .expect("found above")
                .active = true;
        }
        match offer(&mut st, sender, token.clone()) {
            Ok(info) => info,
            Err(e) => {
                let message = refusal_text(&e);
                drop(st);
                return refuse(&state, StatusCode::BAD_REQUEST, message);
            }
        }
    };
    // ProcessPayment.
    let pinned_price = if on_chain {
        let mut st = lock(&state);
        if st.faults.reject_payments {
            drop(st);
            return refuse(&state, StatusCode::BAD_REQUEST, "payment rejected");
        }
        let typed = read_payment(&payment);
        if payment.ticket_params.is_some() && typed.is_none() {
            drop(st);
            return refuse(&state, StatusCode::BAD_REQUEST, "malformed payment");
        }
        let session = st
            .sessions
            .get_mut(&token.session_id)
            .expect("checked above");
        // The first payment pins the session's price; one without tickets pins it to zero.
        let price = *session.price.get_or_insert(match &typed {
            Some(p) => p.expected_price,
            None => PriceInfo {
                price_per_unit: 0,
                pixels_per_unit: 1,
            },
        });
        if let Some(typed) = &typed {
            let ev = typed.ticket_params.expected_value();
            let winners_before = st.recipient.winners.len();
            let received = st.recipient.receive_payment(typed, &token.session_id);
            let credited = match &received {
                Ok(n) => *n as u64,
                Err(_) => 0,
            };
            st.stats.tickets += credited;
            st.stats.ev_credited += &ev * BigInt::from(credited);
            st.stats.winning_tickets += (st.recipient.winners.len() - winners_before) as u64;
            if let Err(e) = received {
                drop(st);
                return refuse(&state, StatusCode::BAD_REQUEST, refusal_text(&e));
            }
            if price.price_per_unit > 0 && st.recipient.balance(sender, &token.session_id) < ev {
                drop(st);
                return refuse(&state, StatusCode::BAD_REQUEST, "Insufficient balance");
            }
        } else if price.price_per_unit > 0 {
            drop(st);
            return refuse(&state, StatusCode::BAD_REQUEST, "Insufficient balance");
        }
        Some(price)
    } else {
        None
    };
    let stall = lock(&state).faults.stall;
    let body = match Limited::new(request.into_body(), MAX_SEGMENT_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return refuse(
                &state,
                StatusCode::BAD_REQUEST,
                "could not read the segment",
            );
        }
    };
    if keccak256(&body).as_slice() != seg.hash.as_slice() {
        return refuse(&state, StatusCode::FORBIDDEN, "Forbidden");
    }
    if let Some(stall) = stall {
        tokio::time::sleep(stall).await;
    }
    // 200 now; the TranscodeResult follows when the renditions are ready.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    tokio::spawn(async move {
        let result = transcode(
            &state,
            &seg,
            &profiles,
            &token,
            sender,
            pinned_price,
            body,
            info,
        )
        .await;
        let _ = tx
            .send(Ok(Frame::data(Bytes::from(result.encode_to_vec()))))
            .await;
    });
    let stream = futures_stream(rx);
    Response::builder()
        .header(
            http::header::CONTENT_TYPE,
            "application/vnd+livepeer.transcoderesult",
        )
        .body(Body::new(StreamBody::new(stream)))
        .expect("a valid response")
}

fn futures_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[allow(clippy::too_many_arguments)]
async fn transcode(
    state: &Arc<Mutex<State>>,
    seg: &proto::SegData,
    profiles: &[proto::VideoProfile],
    token: &proto::AuthToken,
    sender: Address,
    price: Option<PriceInfo>,
    body: Bytes,
    info: proto::OrchestratorInfo,
) -> proto::TranscodeResult {
    let fail = |message: String| proto::TranscodeResult {
        seq: seg.seq,
        result: Some(transcode_result::Result::Error(message)),
        info: Some(info.clone()),
    };
    let (fail_transcoding, transcoder) = {
        let st = lock(state);
        (st.faults.fail_transcoding, st.config.transcoder.clone())
    };
    if fail_transcoding {
        return fail("MediaStats Failure".into());
    }
    let source = match source_segment(seg, &body) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let renditions: Vec<Rendition> = profiles.iter().map(rendition).collect();
    let job = TranscodeJob {
        stream: String::from_utf8_lossy(&seg.manifest_id).into(),
        segment: Arc::new(source),
        renditions: renditions.clone().into(),
    };
    let outputs = match transcoder.transcode(job).await {
        Ok(o) => o,
        Err(e) => return fail(e.to_string()),
    };
    let mut segments = Vec::new();
    let mut hashes = Vec::new();
    let mut total_pixels = 0u64;
    for (output, rendition) in outputs.iter().zip(&renditions) {
        let ts = match TsMuxer::new().mux(output) {
            Ok(ts) => ts,
            Err(e) => return fail(e.to_string()),
        };
        let frames = output
            .packets
            .iter()
            .filter(|p| p.track == Track::Video && p.kind == PacketKind::Frame)
            .count() as u64;
        let pixels = u64::from(rendition.width) * u64::from(rendition.height) * frames;
        total_pixels += pixels;
        hashes.extend_from_slice(keccak256(&ts).as_slice());
        let dir = format!("/stream/{}/{}", token.session_id, rendition.name());
        let path = format!("{dir}/{}.ts", seg.seq);
        let url = {
            let mut st = lock(state);
            let kept = st.results.entry(dir).or_default();
            kept.push_back((path.clone(), ts));
            while kept.len() > KEPT_PER_RENDITION {
                kept.pop_front();
            }
            format!("{}{path}", st.uri)
        };
        segments.push(proto::TranscodedSegmentData {
            url,
            pixels: pixels as i64,
            perceptual_hash_url: String::new(),
        });
    }
    let mut st = lock(state);
    let sig = st
        .node
        .sign_ticket_hash(&keccak256(&hashes))
        .map(|s| s.as_bytes().to_vec())
        .unwrap_or_default();
    if let Some(price) = price {
        st.recipient
            .debit(sender, &token.session_id, &price, total_pixels);
        st.stats.debited += PricePerPixel::from_price_info(&price)
            .map_or_else(|_| BigRational::zero(), |p| p.cost_of(total_pixels));
    }
    st.stats.pixels += total_pixels;
    st.stats.segments += 1;
    proto::TranscodeResult {
        seq: seg.seq,
        result: Some(transcode_result::Result::Data(proto::TranscodeData {
            segments,
            sig,
        })),
        info: Some(info),
    }
}

/// The posted MPEG-TS as a segment.
fn source_segment(seg: &proto::SegData, body: &[u8]) -> Result<Segment, String> {
    let packets = mpegts::demux_file(body).map_err(|e| e.to_string())?;
    let start_ms = packets
        .iter()
        .filter(|p| p.kind == PacketKind::Frame)
        .map(|p| p.dts_ms)
        .min()
        .ok_or("an empty segment")?;
    let duration_ms = if seg.duration > 0 {
        i64::from(seg.duration)
    } else {
        2000
    };
    Ok(Segment::from_packets(
        seg.seq.max(0) as u64,
        start_ms,
        duration_ms,
        false,
        packets,
    ))
}

/// A requested profile as the bundled transcoder takes it.
fn rendition(p: &proto::VideoProfile) -> Rendition {
    let fps = (p.fps > 0).then(|| FrameRate {
        num: p.fps,
        den: p.fps_den.max(1),
    });
    let gop = match p.gop {
        0 => Gop::Segment,
        video_profile::GOP_INTRA_ONLY => Gop::Intra,
        ms => Gop::Seconds(f64::from(ms.max(1)) / 1000.0),
    };
    let profile = match video_profile::Profile::try_from(p.profile) {
        Ok(video_profile::Profile::H264Baseline) => H264Profile::Baseline,
        Ok(video_profile::Profile::H264Main) => H264Profile::Main,
        Ok(video_profile::Profile::H264ConstrainedHigh) => H264Profile::ConstrainedHigh,
        _ => H264Profile::High,
    };
    let (width, height) = (p.width.max(2) as u32, p.height.max(2) as u32);
    Rendition {
        profile: RenditionProfile {
            name: p.name.clone(),
            width,
            height,
            bitrate: p.bitrate.max(1) as u64,
            fps,
            gop,
            profile,
            quality: (p.quality > 0).then(|| p.quality.min(51) as u8),
        },
        width,
        height,
        level: level_for(width, height, fps.map_or(30.0, FrameRate::as_f64)),
    }
}
