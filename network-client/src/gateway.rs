//! The embedded gateway: transcodes live segments on orchestrators of the Livepeer network and pays them with PM
//! tickets. [`Gateway`] implements media-core's [`Transcoder`]; [`WithFallback`] puts the bundled transcoder behind
//! it so that a segment the network fails on is transcoded locally instead.
//!
//! Per stream the gateway keeps what go-livepeer keeps per broadcast (§3.3, §3.6): a pool of orchestrator
//! sessions (each with its offer, payment session, starting price and latency score), the one in use, and the
//! orchestrators suspended after a failure. A segment gets up to [`GatewayConfig::max_attempts`] tries, each on
//! a session chosen as in §3.7: the last one while it keeps up, otherwise the best known or the next in discovery
//! order. Segments of one stream go one at a time, in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use num_rational::BigRational;
use num_traits::ToPrimitive;
use prost::Message;
use studio_media_core::hls::ts::TsMuxer;
use studio_media_core::segment::Segment;
use studio_media_core::transcode::{
    TranscodeError, TranscodeFuture, TranscodeJob, TranscodeOutput, Transcoder,
};
use tokio::sync::Mutex;
use url::Url;

use crate::capabilities::{compatible, job_capabilities};
use crate::discovery::{Candidate, Discovery};
use crate::orchestrator::{Identity, Offer, OfferError, payment_message};
use crate::pm::{
    PaymentSession, PricePerPixel, SegmentOutcome, SenderConfig, SenderError, estimate_fee,
};
use crate::proto::{self, transcode_result};
use crate::segment::{SegmentRequest, billed_profile, header, rendition_segment, video_profile};
use crate::transport::{SegmentTimeouts, Transport, TransportError};

/// go-livepeer's `priceIncreaseThreshold`: an orchestrator whose price more than doubles within a session is left.
pub const PRICE_INCREASE_LIMIT: u32 = 2;

/// How long a stream waits before asking orchestrators again after none answered usefully.
pub const DISCOVERY_BACKOFF: Duration = Duration::from_secs(5);

/// How the gateway behaves.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Where orchestrators come from.
    pub discovery: Discovery,
    /// Off-chain, or the account that signs and pays.
    pub identity: Identity,
    /// The highest price accepted, in wei per pixel; `None` accepts any.
    pub max_price: Option<PricePerPixel>,
    /// Limits on orchestrators' ticket params.
    pub sender: SenderConfig,
    /// Tries per segment, each on a different orchestrator when one is available.
    pub max_attempts: usize,
    /// How long a failed orchestrator is left out.
    pub suspension: Duration,
    /// Deadline of a `GetOrchestrator` (discovery and refresh).
    pub offer_timeout: Duration,
    /// Offers gathered per stream before choosing.
    pub pool_size: usize,
}

impl GatewayConfig {
    /// go-livepeer's defaults around `discovery` and `identity`.
    pub fn new(discovery: Discovery, identity: Identity) -> Self {
        Self {
            discovery,
            identity,
            max_price: None,
            sender: SenderConfig::default(),
            max_attempts: 3,
            suspension: Duration::from_secs(60),
            offer_timeout: Duration::from_millis(2500),
            pool_size: 8,
        }
    }
}

/// Why one attempt at a segment failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the orchestrator refused the segment ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the orchestrator failed to transcode: {0}")]
    Transcode(String),
    #[error("unusable answer: {0}")]
    BadAnswer(String),
    #[error(transparent)]
    Offer(#[from] OfferError),
    #[error("payment: {0}")]
    Payment(#[from] SenderError),
    #[error("the price rose from {from} to {to} wei/pixel, more than {PRICE_INCREASE_LIMIT}x")]
    PriceIncrease { from: String, to: String },
    #[error("the price {price} wei/pixel is above the maximum {max}")]
    TooExpensive { price: String, max: String },
}

impl AttemptError {
    /// The orchestrator refused the tickets because their params expired: fetch new ones and try again.
    fn params_expired(&self) -> bool {
        matches!(self, Self::Refused { message, .. } if message.contains("TicketParams expired"))
    }
}

/// What the gateway did for one stream, for logs, metrics and tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamStats {
    /// The orchestrator that transcoded the last segment.
    pub orchestrator: Option<Url>,
    /// Segments transcoded by orchestrators.
    pub segments_transcoded: u64,
    /// Attempts that failed (each suspends an orchestrator).
    pub attempts_failed: u64,
    /// Tickets sent.
    pub tickets: u64,
    /// The expected value of the tickets sent, in wei.
    pub ev_paid: BigRational,
    /// Output pixels the orchestrators billed.
    pub pixels_billed: u64,
    /// The price times the pixels billed, in wei: what the work cost.
    pub cost: BigRational,
}

/// One orchestrator as a stream uses it.
struct OrchestratorSession {
    uri: Url,
    offer: Offer,
    payment: Option<PaymentSession>,
    initial_price: PricePerPixel,
    /// The last round trip over `max(1.5 s, segment duration)`; `None` before the first segment.
    latency_score: Option<f64>,
    /// How long `GetOrchestrator` took, for ordering fresh sessions.
    offer_latency: Duration,
}

impl OrchestratorSession {
    fn price(&self) -> PricePerPixel {
        self.payment
            .as_ref()
            .map_or_else(PricePerPixel::zero, |p| p.price().clone())
    }

    /// Takes a newer `OrchestratorInfo` from the same orchestrator.
    fn apply_info(
        &mut self,
        info: &proto::OrchestratorInfo,
        config: &GatewayConfig,
    ) -> Result<(), AttemptError> {
        let offer = Offer::from_info(info, self.payment.is_some())?;
        if let (Some(payment), Some(terms)) = (self.payment.as_mut(), offer.terms.clone()) {
            payment.update(terms, Instant::now())?;
        }
        self.offer = offer;
        let price = self.price();
        check_price(&price, config)?;
        let limit =
            self.initial_price.as_rational() * num_bigint::BigInt::from(PRICE_INCREASE_LIMIT);
        if price.as_rational() > &limit {
            return Err(AttemptError::PriceIncrease {
                from: self.initial_price.as_rational().to_string(),
                to: price.as_rational().to_string(),
            });
        }
        Ok(())
    }

    /// Whether the offer must be renewed before the next segment.
    fn needs_refresh(&self) -> bool {
        self.offer.auth_token_expiring(SystemTime::now())
            || self
                .payment
                .as_ref()
                .is_some_and(|p| p.check_fresh(Instant::now(), None).is_err())
    }
}

fn check_price(price: &PricePerPixel, config: &GatewayConfig) -> Result<(), AttemptError> {
    match &config.max_price {
        Some(max) if !max.is_zero() && price > max => Err(AttemptError::TooExpensive {
            price: price.as_rational().to_string(),
            max: max.as_rational().to_string(),
        }),
        _ => Ok(()),
    }
}

#[derive(Default)]
struct StreamState {
    current: Option<OrchestratorSession>,
    /// Fresh sessions, best first.
    pool: Vec<OrchestratorSession>,
    suspended: HashMap<Url, Instant>,
    /// After a discovery that found nobody, the next one waits until then: segments meanwhile fail fast (and
    /// fall back) instead of each waiting out the offer timeouts of unreachable orchestrators.
    next_discovery: Option<Instant>,
    stats: StreamStats,
}

impl StreamState {
    fn is_suspended(&self, uri: &Url) -> bool {
        self.suspended
            .get(uri)
            .is_some_and(|until| *until > Instant::now())
    }
}

/// The embedded Livepeer gateway. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    config: GatewayConfig,
    transport: Transport,
    streams: StdMutex<HashMap<Arc<str>, Arc<Mutex<StreamState>>>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("identity", &self.inner.config.identity)
            .field("discovery", &self.inner.config.discovery)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway with its own connection pool.
    pub fn new(config: GatewayConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                transport: Transport::new(),
                streams: StdMutex::new(HashMap::new()),
            }),
        }
    }

    /// What the gateway did for `stream` so far; `None` for a stream it has no state for.
    pub async fn stream_stats(&self, stream: &str) -> Option<StreamStats> {
        let state = self.streams().get(stream).cloned()?;
        let state = state.lock().await;
        Some(state.stats.clone())
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Mutex<StreamState>>>> {
        self.inner
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stream(&self, stream: &Arc<str>) -> Arc<Mutex<StreamState>> {
        self.streams().entry(stream.clone()).or_default().clone()
    }

    /// Transcodes one segment on the network: up to `max_attempts` orchestrators, in order of preference.
    pub async fn transcode_segment(
        &self,
        job: TranscodeJob,
    ) -> Result<TranscodeOutput, TranscodeError> {
        let body = TsMuxer::new()
            .mux(&job.segment)
            .map_err(|e| TranscodeError::Source(e.to_string()))?;
        let profiles: Vec<proto::VideoProfile> = job.renditions.iter().map(video_profile).collect();
        let capabilities = job_capabilities(&profiles);
        let state = self.stream(&job.stream);
        let mut state = state.lock().await;
        let mut failures = Vec::new();
        for _ in 0..self.inner.config.max_attempts.max(1) {
            let Some(mut session) = self.choose(&mut state, &capabilities, &job.stream).await
            else {
                break;
            };
            let started = Instant::now();
            let attempt = self
                .attempt(&mut session, &job, &body, &profiles, &mut state.stats)
                .await;
            let orchestrator = session.uri.to_string();
            let stream = job.stream.to_string();
            match attempt {
                Ok(outputs) => {
                    let duration = Duration::from_millis(job.segment.duration_ms.max(0) as u64);
                    let score = started.elapsed().as_secs_f64()
                        / duration.max(Duration::from_millis(1500)).as_secs_f64();
                    session.latency_score = Some(score);
                    if state.stats.orchestrator.as_ref() != Some(&session.uri) {
                        tracing::info!(stream = %job.stream, orchestrator = %session.uri, price = %session.price().as_rational(), "transcoding on the Livepeer network");
                    }
                    state.stats.orchestrator = Some(session.uri.clone());
                    state.stats.segments_transcoded += 1;
                    metrics::counter!("studio_network_segments_total", "stream" => stream, "orchestrator" => orchestrator, "result" => "ok").increment(1);
                    state.current = Some(session);
                    return Ok(outputs);
                }
                Err(err) if err.params_expired() => {
                    // Not the orchestrator's fault: new params and another try on the same one (§3.3).
                    tracing::info!(stream = %job.stream, orchestrator = %session.uri, "ticket params expired; refreshing them");
                    state.stats.attempts_failed += 1;
                    failures.push(format!("{}: {err}", session.uri));
                    match self.refresh(&mut session, &capabilities).await {
                        Ok(()) => state.current = Some(session),
                        Err(err) => {
                            tracing::warn!(orchestrator = %session.uri, error = %err, "refreshing an orchestrator's offer failed; suspending it");
                            let until = Instant::now() + self.inner.config.suspension;
                            state.suspended.insert(session.uri.clone(), until);
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(stream = %job.stream, orchestrator = %session.uri, sequence = job.segment.sequence, error = %err, "an orchestrator failed a segment; suspending it");
                    metrics::counter!("studio_network_segments_total", "stream" => stream, "orchestrator" => orchestrator, "result" => "failed").increment(1);
                    state.stats.attempts_failed += 1;
                    let until = Instant::now() + self.inner.config.suspension;
                    state.suspended.insert(session.uri.clone(), until);
                    failures.push(format!("{}: {err}", session.uri));
                }
            }
        }
        if failures.is_empty() {
            failures.push("no orchestrator offered to transcode it".into());
        }
        Err(TranscodeError::Network(format!(
            "segment {}: {}",
            job.segment.sequence,
            failures.join("; ")
        )))
    }

    /// The session for the next attempt: the current one while it keeps up, else the best of the pool, which is
    /// refilled from discovery when empty. The session is returned refreshed and taken out of the state.
    async fn choose(
        &self,
        state: &mut StreamState,
        capabilities: &proto::Capabilities,
        stream: &str,
    ) -> Option<OrchestratorSession> {
        let config = &self.inner.config;
        loop {
            let current = state.current.take().filter(|s| !state.is_suspended(&s.uri));
            let mut session = match current {
                Some(s)
                    if s.latency_score.is_none_or(|score| score <= 1.0)
                        || state.pool.is_empty() =>
                {
                    s
                }
                Some(slow) => {
                    // Slow: try another, keeping this one as a later choice.
                    let next = state.pool.remove(0);
                    state.pool.push(slow);
                    next
                }
                None => {
                    let now = Instant::now();
                    let suspended = &state.suspended;
                    state
                        .pool
                        .retain(|s| suspended.get(&s.uri).is_none_or(|until| *until <= now));
                    if state.pool.is_empty() && state.next_discovery.is_none_or(|at| at <= now) {
                        state.pool = self.discover(&mut *state, capabilities, stream).await;
                        state.next_discovery = state
                            .pool
                            .is_empty()
                            .then(|| Instant::now() + DISCOVERY_BACKOFF);
                    }
                    if state.pool.is_empty() {
                        return None;
                    }
                    state.pool.remove(0)
                }
            };
            if !session.needs_refresh() {
                return Some(session);
            }
            match self.refresh(&mut session, capabilities).await {
                Ok(()) => return Some(session),
                Err(err) => {
                    tracing::warn!(orchestrator = %session.uri, error = %err, "refreshing an orchestrator's offer failed; suspending it");
                    state
                        .suspended
                        .insert(session.uri.clone(), Instant::now() + config.suspension);
                }
            }
        }
    }

    async fn refresh(
        &self,
        session: &mut OrchestratorSession,
        capabilities: &proto::Capabilities,
    ) -> Result<(), AttemptError> {
        let config = &self.inner.config;
        let info = self
            .inner
            .transport
            .get_orchestrator(
                &session.uri,
                config.identity.request(capabilities.clone()),
                config.offer_timeout,
            )
            .await?;
        session.apply_info(&info, config)
    }

    /// Asks every candidate for an offer at once and keeps the usable ones, fastest first. Suspended
    /// orchestrators are asked only when no other one answers, the longest suspended first, and are then taken
    /// back.
    async fn discover(
        &self,
        state: &mut StreamState,
        capabilities: &proto::Capabilities,
        stream: &str,
    ) -> Vec<OrchestratorSession> {
        let candidates = match self.inner.config.discovery.candidates().await {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(%stream, error = %err, "orchestrator discovery failed");
                return Vec::new();
            }
        };
        let (fresh, suspended): (Vec<Candidate>, Vec<Candidate>) = candidates
            .into_iter()
            .partition(|c| !state.is_suspended(&c.uri));
        let mut sessions = self.offers(fresh, capabilities, stream).await;
        sessions.sort_by_key(|s| s.offer_latency);
        if sessions.is_empty() && !suspended.is_empty() {
            sessions = self.offers(suspended, capabilities, stream).await;
            sessions.sort_by_key(|s| state.suspended.get(&s.uri).copied());
            for session in &sessions {
                state.suspended.remove(&session.uri);
            }
        }
        sessions
    }

    async fn offers(
        &self,
        candidates: Vec<Candidate>,
        capabilities: &proto::Capabilities,
        stream: &str,
    ) -> Vec<OrchestratorSession> {
        let config = &self.inner.config;
        let mut pending: FuturesUnordered<_> = candidates
            .into_iter()
            .map(|candidate| {
                let request = config.identity.request(capabilities.clone());
                let transport = self.inner.transport.clone();
                async move {
                    let started = Instant::now();
                    let info = transport
                        .get_orchestrator(&candidate.uri, request, config.offer_timeout)
                        .await;
                    (candidate, info, started.elapsed())
                }
            })
            .collect();
        let mut sessions = Vec::new();
        while let Some((candidate, info, latency)) = pending.next().await {
            match info
                .map_err(AttemptError::from)
                .and_then(|info| self.session(&candidate, &info, capabilities, latency))
            {
                Ok(session) => {
                    sessions.push(session);
                    if sessions.len() >= config.pool_size {
                        break;
                    }
                }
                Err(err) => {
                    tracing::info!(%stream, orchestrator = %candidate.uri, error = %err, "orchestrator left out");
                }
            }
        }
        sessions
    }

    /// A session from a first offer, if the orchestrator can do the job at an acceptable price.
    fn session(
        &self,
        candidate: &Candidate,
        info: &proto::OrchestratorInfo,
        capabilities: &proto::Capabilities,
        latency: Duration,
    ) -> Result<OrchestratorSession, AttemptError> {
        let config = &self.inner.config;
        let signer = config.identity.signer();
        let offer = Offer::from_info(info, signer.is_some())?;
        if let Some(theirs) = &offer.capabilities
            && !compatible(capabilities, theirs)
        {
            return Err(AttemptError::BadAnswer("incompatible capabilities".into()));
        }
        let payment = match (signer, offer.terms.clone()) {
            (Some(signer), Some(terms)) => Some(PaymentSession::new(
                signer.clone(),
                config.sender.clone(),
                terms,
                Instant::now(),
            )?),
            (Some(_), None) => {
                return Err(AttemptError::BadAnswer(
                    "no ticket params from an on-chain orchestrator".into(),
                ));
            }
            (None, _) => None,
        };
        let session = OrchestratorSession {
            uri: candidate.uri.clone(),
            offer,
            initial_price: payment
                .as_ref()
                .map_or_else(PricePerPixel::zero, |p| p.price().clone()),
            payment,
            latency_score: None,
            offer_latency: latency,
        };
        check_price(&session.price(), config)?;
        Ok(session)
    }

    /// Sends the segment to one orchestrator, pays for it and reads the renditions back.
    async fn attempt(
        &self,
        session: &mut OrchestratorSession,
        job: &TranscodeJob,
        body: &bytes::Bytes,
        profiles: &[proto::VideoProfile],
        stats: &mut StreamStats,
    ) -> Result<TranscodeOutput, AttemptError> {
        let config = &self.inner.config;
        let segment = &job.segment;
        let duration = Duration::from_millis(segment.duration_ms.max(0) as u64);
        let stream = job.stream.to_string();
        let orchestrator = session.uri.to_string();
        let (payment_header, reservation) = match session.payment.as_mut() {
            None => (String::new(), None),
            Some(payment) => {
                let billed: Vec<_> = job.renditions.iter().map(billed_profile).collect();
                let fee = estimate_fee(&billed, duration, payment.price());
                let paid = payment.pay_for_segment(&fee, Instant::now(), None)?;
                let tickets = paid.payment.tickets.len() as u64;
                stats.tickets += tickets;
                stats.ev_paid += paid.reservation.new_credit();
                metrics::counter!("studio_network_tickets_total", "stream" => stream.clone(), "orchestrator" => orchestrator.clone()).increment(tickets);
                let ev_wei = paid
                    .reservation
                    .new_credit()
                    .floor()
                    .to_integer()
                    .to_u64()
                    .unwrap_or(u64::MAX);
                metrics::counter!("studio_network_ev_paid_wei_total", "stream" => stream.clone(), "orchestrator" => orchestrator.clone()).increment(ev_wei);
                (
                    header(&payment_message(&paid.payment)),
                    Some(paid.reservation),
                )
            }
        };
        let request = SegmentRequest::new(
            &config.identity,
            &job.stream,
            segment.sequence,
            segment.duration_ms,
            body.clone(),
            profiles.to_vec(),
            session.offer.auth_token.clone(),
        )
        .map_err(SenderError::from)?;
        let response = self
            .inner
            .transport
            .post_segment(
                &session.offer.transcoder,
                &header(&request.seg_data),
                &payment_header,
                request.body,
                SegmentTimeouts::for_segment(duration),
            )
            .await;
        let settle = |session: &mut OrchestratorSession, reservation, outcome| {
            if let (Some(payment), Some(reservation)) = (session.payment.as_mut(), reservation) {
                payment.settle(reservation, outcome);
            }
        };
        let response = match response {
            Ok(r) => r,
            Err(err) => {
                settle(session, reservation, SegmentOutcome::NotDelivered);
                return Err(err.into());
            }
        };
        if response.status != http::StatusCode::OK {
            settle(session, reservation, SegmentOutcome::NotDelivered);
            return Err(AttemptError::Refused {
                status: response.status.as_u16(),
                message: String::from_utf8_lossy(&response.body).trim().to_owned(),
            });
        }
        let result = match proto::TranscodeResult::decode(response.body) {
            Ok(r) => r,
            Err(err) => {
                settle(
                    session,
                    reservation,
                    SegmentOutcome::Delivered { pixels: 0 },
                );
                return Err(AttemptError::BadAnswer(format!("TranscodeResult: {err}")));
            }
        };
        let data = match result.result {
            Some(transcode_result::Result::Data(data)) => data,
            Some(transcode_result::Result::Error(message)) => {
                settle(
                    session,
                    reservation,
                    SegmentOutcome::Delivered { pixels: 0 },
                );
                if let Some(info) = &result.info {
                    session.apply_info(info, config)?;
                }
                return Err(AttemptError::Transcode(message));
            }
            None => {
                settle(
                    session,
                    reservation,
                    SegmentOutcome::Delivered { pixels: 0 },
                );
                return Err(AttemptError::BadAnswer(
                    "neither renditions nor an error".into(),
                ));
            }
        };
        let pixels: u64 = data.segments.iter().map(|s| s.pixels.max(0) as u64).sum();
        let cost = session.price().cost_of(pixels);
        settle(session, reservation, SegmentOutcome::Delivered { pixels });
        stats.pixels_billed += pixels;
        stats.cost += cost;
        if let Some(info) = &result.info {
            session.apply_info(info, config)?;
        }
        if data.segments.len() != job.renditions.len() {
            return Err(AttemptError::BadAnswer(format!(
                "{} renditions for {} profiles",
                data.segments.len(),
                job.renditions.len()
            )));
        }
        self.download(&data, job, duration).await
    }

    /// Fetches every rendition at once (orchestrators keep only the last few) and reads them back.
    async fn download(
        &self,
        data: &proto::TranscodeData,
        job: &TranscodeJob,
        duration: Duration,
    ) -> Result<TranscodeOutput, AttemptError> {
        let timeout = duration.max(Duration::from_secs(4));
        let fetches =
            data.segments
                .iter()
                .zip(job.renditions.iter())
                .map(|(rendition, planned)| {
                    let transport = self.inner.transport.clone();
                    let source: Arc<Segment> = job.segment.clone();
                    async move {
                        let url = Url::parse(&rendition.url).map_err(|e| {
                            AttemptError::BadAnswer(format!(
                                "rendition URL {:?}: {e}",
                                rendition.url
                            ))
                        })?;
                        let ts = transport.download(&url, timeout).await?;
                        rendition_segment(planned.name(), &source, &ts)
                            .map_err(|e| AttemptError::BadAnswer(e.to_string()))
                    }
                });
        futures_util::future::try_join_all(fetches).await
    }
}

impl Transcoder for Gateway {
    fn name(&self) -> String {
        "network".into()
    }

    fn transcode(&self, job: TranscodeJob) -> TranscodeFuture {
        let gateway = self.clone();
        Box::pin(async move { gateway.transcode_segment(job).await })
    }

    fn stream_ended(&self, stream: &str) {
        if let Some(state) = self.streams().remove(stream)
            && let Ok(state) = state.try_lock()
            && let Some(orchestrator) = &state.stats.orchestrator
        {
            let s = &state.stats;
            tracing::info!(
                %stream,
                %orchestrator,
                segments = s.segments_transcoded,
                failed_attempts = s.attempts_failed,
                tickets = s.tickets,
                ev_paid_wei = %s.ev_paid.floor(),
                "network transcoding of the stream ended"
            );
        }
    }
}

/// A transcoder with a fallback: each segment the first one fails on goes to the second. With the network first
/// and the bundled transcoder second, a stream keeps its renditions, in order and without a gap, when
/// orchestrators fail.
pub struct WithFallback {
    primary: Arc<dyn Transcoder>,
    fallback: Arc<dyn Transcoder>,
}

impl WithFallback {
    /// `primary`, falling back to `fallback`.
    pub fn new(primary: Arc<dyn Transcoder>, fallback: Arc<dyn Transcoder>) -> Self {
        Self { primary, fallback }
    }
}

impl Transcoder for WithFallback {
    fn name(&self) -> String {
        format!("{}+{}", self.primary.name(), self.fallback.name())
    }

    fn transcode(&self, job: TranscodeJob) -> TranscodeFuture {
        let primary = self.primary.clone();
        let fallback = self.fallback.clone();
        Box::pin(async move {
            match primary.transcode(job.clone()).await {
                Ok(outputs) => Ok(outputs),
                // The source itself is unusable: the fallback would fail on it too.
                Err(err @ TranscodeError::Source(_)) => Err(err),
                Err(err) => {
                    tracing::warn!(stream = %job.stream, sequence = job.segment.sequence, error = %err, transcoder = %fallback.name(), "falling back for a segment");
                    metrics::counter!("studio_network_fallbacks_total", "stream" => job.stream.to_string()).increment(1);
                    fallback.transcode(job).await
                }
            }
        })
    }

    fn stream_ended(&self, stream: &str) {
        self.primary.stream_ended(stream);
        self.fallback.stream_ended(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_price_above_the_maximum_is_refused() {
        let mut config = GatewayConfig::new(Discovery::Static(Vec::new()), Identity::OffChain);
        let price = |n, d| {
            PricePerPixel::from_price_info(&crate::pm::PriceInfo {
                price_per_unit: n,
                pixels_per_unit: d,
            })
            .unwrap()
        };
        check_price(&price(1000, 1), &config).unwrap();
        config.max_price = Some(price(2021, 2));
        check_price(&price(1010, 1), &config).unwrap();
        assert!(matches!(
            check_price(&price(1011, 1), &config),
            Err(AttemptError::TooExpensive { .. })
        ));
        config.max_price = Some(PricePerPixel::zero());
        check_price(&price(i64::MAX, 1), &config).unwrap();
    }
}
