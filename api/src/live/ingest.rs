//! Runs the RTMP ingest server for the API: authorizes stream keys, opens a session per publish,
//! segments its packets and records every segment, and closes the session when the encoder goes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::Row;
use studio_media_core::Packet;
use studio_media_core::ingest::rtmp::{IngestEvent, PublishGrant, PublishRequest, Refusal, RtmpConfig, RtmpServer, SessionId};
use studio_media_core::segment::{Segment, Segmenter, SegmenterConfig};
use tokio::sync::{mpsc, watch};

use super::hls_output::HlsOutput;
use super::registry::Publisher;
use crate::app::AppState;
use crate::clock::now_ms;
use crate::events::{self, EventType, NewEvent};
use crate::sessions;
use crate::streams;

/// A stream with a live publisher whose last segment is older than this is taken as abandoned
/// by a node that died, so a new publisher may take over.
const STALE_PUBLISHER_MS: i64 = 10_000;
/// Packets queued per session before the ingest connection is slowed down.
const SESSION_QUEUE: usize = 512;

/// Binds the RTMP server on `addr` and starts handling its events until `shutdown`.
pub async fn start(state: AppState, addr: SocketAddr, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<(RtmpServer, tokio::task::JoinHandle<()>)> {
    let config = RtmpConfig { addr, ..RtmpConfig::default() };
    let authorizer_state = state.clone();
    let (server, mut events) = RtmpServer::bind(config, move |request: PublishRequest| {
        let state = authorizer_state.clone();
        async move { authorize(&state, &request).await }
    })
    .await
    .map_err(|e| anyhow::anyhow!("binding the RTMP address {addr}: {e}"))?;
    let task = tokio::spawn(async move {
        let mut sessions: std::collections::HashMap<SessionId, mpsc::Sender<Packet>> = Default::default();
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = shutdown.changed() => None,
            };
            match event {
                None => break,
                Some(IngestEvent::Started { handle, grant, .. }) => {
                    let (packets, receiver) = mpsc::channel(SESSION_QUEUE);
                    sessions.insert(handle.id(), packets);
                    tokio::spawn(run_session(state.clone(), handle, grant.stream_id, receiver));
                }
                Some(IngestEvent::Packet { session_id, packet }) => {
                    if let Some(packets) = sessions.get(&session_id) {
                        // A full queue makes this wait, and the encoder's TCP connection with it.
                        let _ = packets.send(packet).await;
                    }
                }
                Some(IngestEvent::Ended { session_id, reason }) => {
                    tracing::info!(session = session_id.0, ?reason, "publish ended");
                    // Closing the channel tells the session task to finish.
                    sessions.remove(&session_id);
                }
            }
        }
    });
    Ok((server, task))
}

/// Who may publish: a known, live, unsuspended stream without a publisher.
async fn authorize(state: &AppState, request: &PublishRequest) -> Result<PublishGrant, Refusal> {
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
    let Some(row) = row else { return Err(refuse("unknown stream key")) };
    let stream_id: String = row.try_get("id").map_err(|_| refuse("temporary server error"))?;
    if row.try_get::<i64, _>("suspended").unwrap_or(1) != 0 {
        return Err(refuse("the stream is suspended"));
    }
    let active = row.try_get::<i64, _>("is_active").unwrap_or(0) != 0;
    let last_seen: i64 = row.try_get("last_seen").unwrap_or(0);
    if state.live().is_live(&stream_id) || (active && now_ms() - last_seen < STALE_PUBLISHER_MS) {
        return Err(refuse("the stream already has a publisher"));
    }
    Ok(PublishGrant { stream_id })
}

/// One publish: opens the session, records segments as they complete, closes it at the end.
async fn run_session(
    state: AppState,
    handle: studio_media_core::ingest::rtmp::SessionHandle,
    stream_id: String,
    mut packets: mpsc::Receiver<Packet>,
) {
    let ending = Arc::new(AtomicBool::new(false));
    if !state.live().claim(&stream_id, Publisher { handle: handle.clone(), ending: ending.clone() }) {
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
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let mut hls = HlsOutput::new(&session.playback_id, &session.id);
    let mut went_live = false;
    while let Some(packet) = packets.recv().await {
        match segmenter.push(packet) {
            Ok(Some(segment)) => {
                publish(&state, &session, &segment, &ending, &mut went_live, &mut hls).await;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::info!(stream = %stream_id, error = %err, "ending a publish the segmenter cannot follow");
                handle.disconnect();
            }
        }
    }
    if let Some(segment) = segmenter.finish() {
        publish(&state, &session, &segment, &ending, &mut went_live, &mut hls).await;
    }
    if let Err(err) = hls.end(state.media_store()).await {
        tracing::error!(error = format!("{err:#}"), "closing the HLS playlist failed");
    }
    if let Err(err) = close(&state, &session).await {
        tracing::error!(error = format!("{err:#}"), "closing a session failed");
    }
    crate::recording::session_ended(&state, &session.project_id, &session.id).await;
    state.live().release(&stream_id, &handle);
}

/// Makes a segment playable (HLS) and then counts it, so a stream is never reported live before
/// a player can fetch it.
async fn publish(state: &AppState, session: &OpenSession, segment: &Segment, ending: &AtomicBool, went_live: &mut bool, hls: &mut HlsOutput) {
    if ending.load(Ordering::Acquire) {
        return;
    }
    let stored = match hls.push(state.media_store(), segment).await {
        Ok(key) => Some(key),
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), stream = %session.stream_id, "packaging a segment as HLS failed");
            None
        }
    };
    if let Err(err) = record(state, session, segment, ending, went_live).await {
        tracing::error!(error = format!("{err:#}"), "recording a segment failed");
    }
    if let Some(key) = stored {
        crate::recording::segment_stored(state, &session.project_id, &session.id, key, segment).await;
    }
}

/// The database identity of a running session.
struct OpenSession {
    id: String,
    project_id: String,
    stream_id: String,
    playback_id: String,
}

async fn open(state: &AppState, stream_id: &str) -> anyhow::Result<Option<OpenSession>> {
    let now = now_ms();
    let mut tx = state.db().begin().await?;
    // The grant names the stream by id alone; its project comes from the row itself.
    let project_id: Option<String> = sqlx::query("SELECT project_id FROM streams WHERE id = $1 AND deleted = 0")
        .bind(stream_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get("project_id"))
        .transpose()?;
    let Some(project_id) = project_id else { return Ok(None) };
    let Some(stream) = streams::repo::get(&mut *tx, &project_id, stream_id).await? else { return Ok(None) };
    let id = crate::ids::new_id();
    sessions::repo::insert(&mut tx, &id, &stream, now).await?;
    tx.commit().await?;
    tracing::info!(stream = %stream_id, session = %id, "publish started");
    Ok(Some(OpenSession { id, project_id, stream_id: stream_id.to_string(), playback_id: stream.playback_id.clone() }))
}

/// Adds a segment to the statistics; the first one makes the stream live (`stream.started`).
async fn record(state: &AppState, session: &OpenSession, segment: &Segment, ending: &AtomicBool, went_live: &mut bool) -> anyhow::Result<()> {
    if ending.load(Ordering::Acquire) {
        return Ok(());
    }
    let now = now_ms();
    let duration_s = segment.duration_ms.max(0) as f64 / 1000.0;
    let mut tx = state.db().begin().await?;
    sessions::repo::add_source_segment(&mut tx, &session.project_id, &session.id, &session.stream_id, duration_s, segment.size_bytes as i64, now).await?;
    let mut started = false;
    if !*went_live && streams::repo::set_active(&mut tx, &session.project_id, &session.stream_id, true, now).await? {
        if let Some(stream) = streams::repo::get(&mut *tx, &session.project_id, &session.stream_id).await? {
            events::emit(&mut tx, NewEvent { project_id: &stream.project_id, user_id: &stream.user_id, event: EventType::StreamStarted, stream: Some(&stream), payload: None }, now).await?;
            started = true;
        }
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
    sessions::repo::end(&mut tx, &session.project_id, &session.id, now).await?;
    let mut idle = false;
    if streams::repo::set_active(&mut tx, &session.project_id, &session.stream_id, false, now).await? {
        if let Some(stream) = streams::repo::get(&mut *tx, &session.project_id, &session.stream_id).await? {
            events::emit(&mut tx, NewEvent { project_id: &stream.project_id, user_id: &stream.user_id, event: EventType::StreamIdle, stream: Some(&stream), payload: None }, now).await?;
            idle = true;
        }
    }
    tx.commit().await?;
    if idle {
        state.wake_webhooks();
    }
    tracing::info!(stream = %session.stream_id, session = %session.id, "publish ended");
    Ok(())
}
