//! Runs the RTMP, SRT and WebRTC (WHIP) ingest servers for the API: authorizes stream keys, opens a session per
//! publish, segments its packets and records every segment, and closes the session when the
//! encoder goes.
//!
//! Each publish runs in a task of its own, fed by its own queue from its connection: a session
//! that falls behind (a slow disk, a burst) holds back only its own encoder. A session is live
//! only while its segments are stored: one that cannot store them is ended, not reported live.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::Row;
use studio_media_core::flv::AvcConfig;
use studio_media_core::hls::sps_resolution;
use studio_media_core::ingest::SessionHandle;
use studio_media_core::ingest::rtmp::{RtmpConfig, RtmpServer};
use studio_media_core::ingest::srt::{SrtConfig, SrtServer};
use studio_media_core::ingest::{
    IngestEvent, PacketReceiver, PublishAuthorizer, PublishGrant, PublishRequest, Refusal,
};
use studio_media_core::live_feed::LiveFeed;
use studio_media_core::segment::{Segment, Segmenter, SegmenterConfig};
use studio_media_core::transcode::{Rendition, RenditionProfile, plan_renditions};
use studio_media_core::webrtc::{WebrtcConfig, WebrtcServer};
use tokio::sync::{mpsc, watch};

use super::hls_output::{RenditionWriter, SOURCE_DIR, SessionClock, rendition_dir, write_master};
use super::registry::Publisher;
use super::transcoding::{SessionRef, TranscodePipeline};
use crate::app::AppState;
use crate::clock::now_ms;
use crate::events::{self, EventType, NewEvent};
use crate::sessions;
use crate::sessions::repo::{SegmentKind, SegmentStats};
use crate::sessions::stats::Counts;
use crate::streams;

/// A stream with a live publisher whose last segment is older than this is taken as abandoned
/// by a node that died, so a new publisher may take over.
const STALE_PUBLISHER_MS: i64 = 10_000;
/// Segments in a row that could not be stored before the publish is ended.
const MAX_STORE_FAILURES: u32 = 3;

/// The ingest servers of this node (RTMP, SRT and WebRTC) and the task that turns their events
/// into sessions. Dropping it disconnects every publisher.
pub struct IngestServers {
    rtmp: RtmpServer,
    srt: SrtServer,
    webrtc: Arc<WebrtcServer>,
    events: tokio::task::JoinHandle<()>,
}

impl IngestServers {
    /// Where RTMP encoders publish (`rtmp://{addr}/live/{stream key}`).
    pub fn rtmp_addr(&self) -> SocketAddr {
        self.rtmp.local_addr()
    }

    /// Where SRT encoders publish (`srt://{addr}?streamid={stream key}`).
    pub fn srt_addr(&self) -> SocketAddr {
        self.srt.local_addr()
    }

    /// Where WebRTC peers send their media (WHIP and WHEP sessions).
    pub fn webrtc_addr(&self) -> SocketAddr {
        self.webrtc.local_addr()
    }

    /// Disconnects every publisher, releases the ports and waits for the event task (after the
    /// shutdown signal); the sessions close as they drain.
    pub async fn close(self) -> anyhow::Result<()> {
        drop(self.rtmp);
        self.srt.close().await;
        self.webrtc.close_all();
        self.events.await?;
        Ok(())
    }
}

/// Binds the RTMP server on `rtmp_addr`, the SRT server on `srt_addr` and the WebRTC port on
/// `webrtc_addr`, the first two authorizing against the database (WHIP publishes are authorized
/// by their HTTP request, `live::webrtc`), and handles the events of all three in one task until
/// `shutdown`.
pub async fn start(
    state: AppState,
    rtmp_addr: SocketAddr,
    srt_addr: SocketAddr,
    webrtc_addr: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<IngestServers> {
    let limits = state.ingest_limits().clone();
    let ingest = &state.config().ingest;
    let (rtmp, rtmp_events) = RtmpServer::bind(
        RtmpConfig {
            addr: rtmp_addr,
            max_connections: ingest.max_connections,
            max_unauthorized: ingest.max_unauthorized,
            max_unauthorized_per_address: ingest.max_unauthorized_per_address,
            limits: limits.clone(),
            ..RtmpConfig::default()
        },
        authorizer(state.clone()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("binding the RTMP address {rtmp_addr}: {e}"))?;
    let (srt, srt_events) = SrtServer::bind(
        SrtConfig {
            addr: srt_addr,
            limits: limits.clone(),
            ..SrtConfig::default()
        },
        authorizer(state.clone()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("binding the SRT address {srt_addr}: {e}"))?;
    let settings = &state.config().webrtc;
    let (webrtc, webrtc_events) = WebrtcServer::bind(WebrtcConfig {
        addr: webrtc_addr,
        public_ips: settings.public_ips.clone(),
        max_peers: settings.max_sessions,
        connect_timeout: std::time::Duration::from_secs(settings.connect_timeout_secs.max(1)),
        idle_timeout: std::time::Duration::from_secs(settings.idle_timeout_secs.max(1)),
        limits,
        ..WebrtcConfig::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("binding the WebRTC address {webrtc_addr}: {e}"))?;
    let webrtc = Arc::new(webrtc);
    state.set_webrtc(webrtc.clone());
    let events = tokio::spawn(handle_events(
        state,
        [rtmp_events, srt_events, webrtc_events],
        shutdown,
    ));
    Ok(IngestServers {
        rtmp,
        srt,
        webrtc,
        events,
    })
}

fn authorizer(state: AppState) -> impl PublishAuthorizer {
    move |request: PublishRequest| {
        let state = state.clone();
        async move { authorize(&state, &request).await }
    }
}

/// Turns the events of every server into sessions: a task per publish, fed by the publish's
/// own queue. This task only starts sessions and counts their ends, so it never waits on one.
async fn handle_events(
    state: AppState,
    [mut rtmp, mut srt, mut webrtc]: [mpsc::Receiver<IngestEvent>; 3],
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            Some(event) = rtmp.recv() => event,
            Some(event) = srt.recv() => event,
            Some(event) = webrtc.recv() => event,
            _ = shutdown.changed() => break,
            else => break,
        };
        match event {
            IngestEvent::Started {
                handle,
                grant,
                packets,
                protocol,
                ..
            } => {
                metrics::counter!("studio_ingest_publishes_started_total", "protocol" => protocol.as_str())
                    .increment(1);
                state
                    .tasks()
                    .spawn(run_session(state.clone(), handle, grant.stream_id, packets));
            }
            IngestEvent::Ended { session_id, reason } => {
                metrics::counter!("studio_ingest_publishes_ended_total", "reason" => reason.kind())
                    .increment(1);
                tracing::info!(session = session_id.0, ?reason, "publish ended");
            }
        }
    }
}

/// Who may publish: a known, live, unsuspended stream without a publisher.
async fn authorize(state: &AppState, request: &PublishRequest) -> Result<PublishGrant, Refusal> {
    check_publish(state, request).await?.ok_or_else(|| {
        tracing::info!(remote = %request.remote_addr, "publish refused: unknown stream key");
        Refusal::new("unknown stream key")
    })
}

/// [`authorize`], telling an unknown stream key (`Ok(None)`) from a refusal.
pub(crate) async fn check_publish(
    state: &AppState,
    request: &PublishRequest,
) -> Result<Option<PublishGrant>, Refusal> {
    let row = sqlx::query(
        "SELECT s.id, s.suspended, s.is_active, s.last_seen FROM streams s JOIN projects p ON p.id = s.project_id \
         WHERE s.stream_key = $1 AND s.deleted = 0 AND p.deleted = 0",
    )
    .bind(&request.stream_key)
    .fetch_optional(state.db().reader())
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "looking up a stream key failed");
        Refusal::new("temporary server error")
    })?;
    let refuse = |why: &str| {
        tracing::info!(remote = %request.remote_addr, reason = why, "publish refused");
        Refusal::new(why)
    };
    let Some(row) = row else {
        return Ok(None);
    };
    let stream_id: String = row
        .try_get("id")
        .map_err(|_| refuse("temporary server error"))?;
    if row.try_get::<i64, _>("suspended").unwrap_or(1) != 0 {
        return Err(refuse("the stream is suspended"));
    }
    let active = row.try_get::<i64, _>("is_active").unwrap_or(0) != 0;
    let last_seen: i64 = row.try_get("last_seen").unwrap_or(0);
    if state.live().is_live(&stream_id) || (active && now_ms() - last_seen < STALE_PUBLISHER_MS) {
        return Err(refuse("the stream already has a publisher"));
    }
    Ok(Some(PublishGrant { stream_id }))
}

/// One publish: opens the session, records segments as they complete, closes it at the end.
async fn run_session(
    state: AppState,
    handle: SessionHandle,
    stream_id: String,
    mut packets: PacketReceiver,
) {
    let ending = Arc::new(AtomicBool::new(false));
    let feed = Arc::new(LiveFeed::new());
    // Viewers lose the feed with the publish, whichever way it ends.
    let _close_feed = CloseOnDrop(feed.clone());
    if !state.live().claim(
        &stream_id,
        Publisher {
            handle: handle.clone(),
            ending: ending.clone(),
            started_at: now_ms(),
            feed: feed.clone(),
            webrtc_feed: Default::default(),
        },
    ) {
        tracing::info!(stream = %stream_id, "a second publisher raced the first; disconnecting it");
        handle.disconnect();
        return;
    }
    let session = match open(&state, &stream_id).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            handle.disconnect();
            state.live().release(&stream_id, &handle);
            return;
        }
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), stream = %stream_id, "opening a session failed");
            handle.disconnect();
            state.live().release(&stream_id, &handle);
            return;
        }
    };
    let mut segmenter = Segmenter::new(SegmenterConfig {
        max_bytes: state.config().ingest.max_segment_bytes,
        ..SegmenterConfig::default()
    });
    let mut output = LiveOutput::open(&state, &session).await;
    let mut progress = Progress::default();
    let mut broken = false;
    while let Some(packet) = packets.recv().await {
        feed.push(&packet);
        match segmenter.push(packet) {
            Ok(Some(segment)) => {
                publish(
                    &state,
                    &session,
                    Arc::new(segment),
                    &ending,
                    &mut progress,
                    &mut output,
                )
                .await;
                if progress.store_failures >= MAX_STORE_FAILURES {
                    tracing::error!(stream = %stream_id, failures = progress.store_failures, "ending a publish whose segments cannot be stored");
                    end_early(&handle, "storage_failed");
                    broken = true;
                    break;
                }
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(stream = %stream_id, error = %err, "ending a publish the segmenter cannot follow");
                end_early(&handle, err.kind());
                broken = true;
                break;
            }
        }
        // What the open segment holds stays charged to the ingest memory budget.
        packets.holding(usize::try_from(segmenter.buffered_bytes()).unwrap_or(usize::MAX));
    }
    // Nothing more is read: the encoder's connection ends (if it has not) and its memory returns.
    drop(packets);
    metrics::gauge!("studio_ingest_memory_bytes").set(state.ingest_limits().memory.used() as f64);
    if !broken && let Some(segment) = segmenter.finish() {
        publish(
            &state,
            &session,
            Arc::new(segment),
            &ending,
            &mut progress,
            &mut output,
        )
        .await;
    }
    // Complete statistics before the playlist's end tells players (and clients) it is over.
    if let Err(err) = state
        .session_stats()
        .write_now(state.db(), &session.id)
        .await
    {
        tracing::error!(
            error = format!("{err:#}"),
            "writing session statistics failed"
        );
    }
    if let Err(err) = output.source.end(state.media_store()).await {
        tracing::error!(
            error = format!("{err:#}"),
            "closing the HLS playlist failed"
        );
    }
    if let Err(err) = close(&state, &session).await {
        tracing::error!(error = format!("{err:#}"), "closing a session failed");
    }
    crate::recording::session_ended(&state, &session.project_id, &session.id).await;
    // The renditions trail the source by a transcode; they close on their own.
    if let Some(transcoding) = output.transcoding.take() {
        transcoding.finish();
    }
    state.live().release(&stream_id, &handle);
}

/// Closes a live feed when the session that feeds it ends.
struct CloseOnDrop(Arc<LiveFeed>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Disconnects a publisher the pipeline cannot serve, counted by `reason`.
fn end_early(handle: &SessionHandle, reason: &'static str) {
    metrics::counter!("studio_ingest_publishes_dropped_total", "reason" => reason).increment(1);
    handle.disconnect();
}

/// How a session is doing.
#[derive(Default)]
struct Progress {
    /// A segment was stored and counted: the stream is live.
    went_live: bool,
    /// Segments in a row that could not be stored.
    store_failures: u32,
}

/// Where a session's segments go: the source playlist at once, the renditions through the
/// transcode pipeline (started with the first segment, once the source's picture is known).
struct LiveOutput {
    source: RenditionWriter,
    clock: SessionClock,
    wrote_master: bool,
    transcoding: Option<TranscodePipeline>,
}

impl LiveOutput {
    async fn open(state: &AppState, session: &OpenSession) -> LiveOutput {
        let clock = SessionClock::default();
        let source = RenditionWriter::open(
            state.media_store(),
            &session.playback_id,
            SOURCE_DIR,
            &session.id,
            clock.clone(),
        )
        .await;
        LiveOutput {
            source,
            clock,
            wrote_master: false,
            transcoding: None,
        }
    }

    /// Plans the renditions from the first segment, writes the master playlist and starts the
    /// transcode pipeline if there is anything to transcode.
    async fn start(
        &mut self,
        state: &AppState,
        session: &OpenSession,
        ending: &Arc<AtomicBool>,
        first: &Segment,
        first_ts_bytes: usize,
    ) -> anyhow::Result<()> {
        let renditions: Vec<(String, Rendition)> = plan(first, &session.profiles)
            .into_iter()
            .enumerate()
            .map(|(i, rendition)| (rendition_dir(i, &rendition), rendition))
            .collect();
        write_master(
            state.media_store(),
            &session.playback_id,
            first,
            first_ts_bytes,
            &renditions,
        )
        .await?;
        self.wrote_master = true;
        if !renditions.is_empty() {
            let session_ref = SessionRef {
                id: session.id.clone(),
                project_id: session.project_id.clone(),
                stream_id: session.stream_id.clone(),
                playback_id: session.playback_id.clone(),
                clock: self.clock.clone(),
            };
            let lock = state.live().renditions_lock(&session.stream_id);
            self.transcoding = Some(TranscodePipeline::start(
                state.clone(),
                session_ref,
                renditions,
                lock,
                ending.clone(),
            ));
        }
        Ok(())
    }
}

/// The renditions of the stream's profiles that this source can have (none without video).
fn plan(first: &Segment, profiles: &[RenditionProfile]) -> Vec<Rendition> {
    let Some(config) = first
        .video_config
        .as_ref()
        .and_then(|c| AvcConfig::parse(c).ok())
    else {
        return Vec::new();
    };
    let Some((width, height)) = config.sps.first().and_then(|sps| sps_resolution(sps)) else {
        return Vec::new();
    };
    plan_renditions(
        width,
        height,
        first.video_frame_rate().unwrap_or(0.0),
        profiles,
    )
}

/// Makes a segment playable (HLS) and then counts it, so a stream is never reported live before
/// a player can fetch it; then hands it to the transcode pipeline. A segment that could not be
/// stored is not counted at all.
async fn publish(
    state: &AppState,
    session: &OpenSession,
    segment: Arc<Segment>,
    ending: &Arc<AtomicBool>,
    progress: &mut Progress,
    output: &mut LiveOutput,
) {
    if ending.load(Ordering::Acquire) {
        return;
    }
    let stored = match output.source.push(state.media_store(), &segment).await {
        Ok(stored) => stored,
        Err(err) => {
            progress.store_failures += 1;
            metrics::counter!("studio_ingest_segments_store_failed_total").increment(1);
            tracing::error!(error = format!("{err:#}"), stream = %session.stream_id, "storing a segment failed");
            return;
        }
    };
    progress.store_failures = 0;
    if !output.wrote_master
        && let Err(err) = output
            .start(state, session, ending, &segment, stored.bytes)
            .await
    {
        tracing::error!(error = format!("{err:#}"), stream = %session.stream_id, "writing the master playlist failed");
    }
    if let Err(err) = record(state, session, &segment, ending, &mut progress.went_live).await {
        tracing::error!(error = format!("{err:#}"), "recording a segment failed");
    }
    crate::recording::segment_stored(
        state,
        &session.project_id,
        &session.id,
        stored.key,
        stored.program_date_ms,
        &segment,
    )
    .await;
    if let Some(transcoding) = &output.transcoding {
        transcoding.offer(segment);
    }
}

/// The database identity of a running session.
struct OpenSession {
    id: String,
    project_id: String,
    stream_id: String,
    playback_id: String,
    /// The stream's renditions, as its profiles stood when the publish began.
    profiles: Vec<RenditionProfile>,
}

async fn open(state: &AppState, stream_id: &str) -> anyhow::Result<Option<OpenSession>> {
    let now = now_ms();
    let mut tx = state.db().begin().await?;
    // The grant names the stream by id alone; its project comes from the row itself.
    let project_id: Option<String> =
        sqlx::query("SELECT project_id FROM streams WHERE id = $1 AND deleted = 0")
            .bind(stream_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get("project_id"))
            .transpose()?;
    let Some(project_id) = project_id else {
        return Ok(None);
    };
    let Some(stream) = streams::repo::get(&mut *tx, &project_id, stream_id).await? else {
        return Ok(None);
    };
    let id = crate::ids::new_id();
    sessions::repo::insert(&mut tx, &id, &stream, now).await?;
    tx.commit().await?;
    tracing::info!(stream = %stream_id, session = %id, "publish started");
    let profiles = stream.profiles.iter().map(|p| p.to_rendition()).collect();
    Ok(Some(OpenSession {
        id,
        project_id,
        stream_id: stream_id.to_string(),
        playback_id: stream.playback_id.clone(),
        profiles,
    }))
}

/// Adds a segment to the statistics; the first one makes the stream live (`stream.started`).
async fn record(
    state: &AppState,
    session: &OpenSession,
    segment: &Segment,
    ending: &AtomicBool,
    went_live: &mut bool,
) -> anyhow::Result<()> {
    if ending.load(Ordering::Acquire) {
        return Ok(());
    }
    let now = now_ms();
    let stats = SegmentStats::new(SegmentKind::Source, segment.duration_ms, segment.size_bytes);
    if *went_live {
        // Written with the node's next batch of statistics.
        state.session_stats().add(
            &session.project_id,
            &session.id,
            &session.stream_id,
            stats,
            now,
        );
        return Ok(());
    }
    // The first segment makes the stream live at once.
    let mut tx = state.db().begin().await?;
    sessions::repo::add_counts(
        &mut tx,
        &session.project_id,
        &session.id,
        &session.stream_id,
        SegmentKind::Source,
        &Counts::of(stats),
        now,
    )
    .await?;
    let mut started = false;
    if !*went_live
        && streams::repo::set_active(&mut tx, &session.project_id, &session.stream_id, true, now)
            .await?
        && let Some(stream) =
            streams::repo::get(&mut *tx, &session.project_id, &session.stream_id).await?
    {
        events::emit(
            &mut tx,
            NewEvent {
                project_id: &stream.project_id,
                user_id: &stream.user_id,
                event: EventType::StreamStarted,
                stream: Some(&stream),
                payload: None,
            },
            now,
        )
        .await?;
        started = true;
    }
    tx.commit().await?;
    *went_live = true;
    if started {
        state.wake_webhooks();
    }
    Ok(())
}

/// Ends the session and, if the stream is still live, makes it idle (`stream.idle`).
async fn close(state: &AppState, session: &OpenSession) -> anyhow::Result<()> {
    let now = now_ms();
    let mut tx = state.db().begin().await?;
    // The statistics are complete when the session is seen to end.
    if let Some(counted) = state.session_stats().take(&session.id) {
        counted.write(&mut tx, &session.id).await?;
    }
    sessions::repo::end(&mut tx, &session.project_id, &session.id, now).await?;
    let mut idle = false;
    if streams::repo::set_active(&mut tx, &session.project_id, &session.stream_id, false, now)
        .await?
        && let Some(stream) =
            streams::repo::get(&mut *tx, &session.project_id, &session.stream_id).await?
    {
        events::emit(
            &mut tx,
            NewEvent {
                project_id: &stream.project_id,
                user_id: &stream.user_id,
                event: EventType::StreamIdle,
                stream: Some(&stream),
                payload: None,
            },
            now,
        )
        .await?;
        idle = true;
    }
    tx.commit().await?;
    if idle {
        state.wake_webhooks();
    }
    tracing::info!(stream = %session.stream_id, session = %session.id, "publish ended");
    Ok(())
}
