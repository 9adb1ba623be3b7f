//! Recording: every session of a stream with `record: true` becomes an asset.
//!
//! The live pipeline reports each source segment it stored ([`segment_stored`]) and the end of
//! the session ([`session_ended`]). The first segment of a recorded session emits
//! `recording.started`. The end creates the recording asset (its id is the session's, phase
//! `waiting`, `recording.waiting`) and processes it in the background: the segments are copied
//! under the asset's playback id with a VOD playlist, remuxed into one MP4, probed, and the asset
//! turns `ready` (`recording.ready`), or `failed` with its error (`asset.failed`).
//!
//! What a recording needs is written to the database as its segments arrive (one small insert
//! per segment, see `repo`), so a node that dies loses no recording: [`recovery`] finishes on
//! any node the sessions and assets a dead node left behind. The node making an asset holds its
//! recording with a lease it renews while it works; another node takes over when it runs out.
//!
//! Processing never runs on the ingest path and touches the database only to change the asset's
//! phase, so the SQLite writer is held for a few statements, not for the media work.

pub mod recovery;
mod repo;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context;
use axum::body::Bytes;
use studio_media_core::flv::{AacConfig, AvcConfig};
use studio_media_core::hls::playlist::{MediaPlaylist, Variant, master_playlist};
use studio_media_core::hls::{aac_codec_string, avc_codec_string, sps_resolution};
use studio_media_core::mp4::{self, MediaInfo, TrackKind};
use studio_media_core::packet::Track;
use studio_media_core::segment::Segment;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::app::AppState;
use crate::assets::{
    self, Asset, AssetFile, AssetPhase, AssetSource, AssetStatus, FileKind, TrackType, VideoSpec,
    VideoTrack,
};
use crate::clock::now_ms;
use crate::events::{self, EventType, NewEvent};
use crate::playback::hls::key;
use crate::sessions::{self, Session};
use crate::streams;

/// Segments kept per recording: a day of 2 s segments. Later segments are not recorded.
const MAX_SEGMENTS: i64 = 43_200;
/// Recordings processed at once on a node; more wait their turn.
const CONCURRENT_PROCESSING: usize = 2;

/// The recordings of the sessions this node ingests.
pub struct Recorder {
    sessions: Mutex<HashMap<String, Tracked>>,
    processing: Semaphore,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            sessions: Mutex::new(HashMap::new()),
            processing: Semaphore::new(CONCURRENT_PROCESSING),
        }
    }
}

enum Tracked {
    /// The session's stream does not record.
    NotRecorded,
    Recording(Progress),
}

/// How far the recording of a live session got in the database.
struct Progress {
    /// The number the next segment is stored under.
    next_seq: i64,
    /// The recording's row exists; until then each segment tries to begin it.
    begun: bool,
    truncated: bool,
}

/// What a recorded session stored: what its asset is made from.
struct Recording {
    segments: Vec<StoredSegment>,
    /// Codecs, picture size and frame rate, from the first segment.
    variant: Variant,
}

struct StoredSegment {
    key: String,
    duration_s: f64,
    discontinuity: bool,
}

impl Recorder {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The live pipeline stored `segment` of session `session_id` under `key`. The first call for a
/// session decides whether it records (`recording.started`); a recorded segment is written to
/// the database before this returns.
pub async fn segment_stored(
    state: &AppState,
    project_id: &str,
    session_id: &str,
    key: String,
    segment: &Segment,
) {
    let stored = StoredSegment {
        key,
        duration_s: segment.duration_ms.max(0) as f64 / 1000.0,
        discontinuity: segment.discontinuity,
    };
    // Only one task per session calls this, so the entry does not change between the lock
    // here and the one that records the outcome below.
    let known = state
        .recorder()
        .sessions()
        .get(session_id)
        .map(|tracked| match tracked {
            Tracked::NotRecorded => None,
            Tracked::Recording(progress) => Some((progress.next_seq, progress.begun)),
        });
    let (seq, begun) = match known {
        Some(None) => return,
        Some(Some(position)) => position,
        None => {
            let session = match sessions::repo::get(state.db(), project_id, session_id).await {
                Ok(Some(session)) => session,
                Ok(None) => return,
                Err(err) => {
                    tracing::error!(error = %err, session = %session_id, "reading a session to record failed");
                    return;
                }
            };
            if !session.record {
                state
                    .recorder()
                    .sessions()
                    .insert(session_id.to_string(), Tracked::NotRecorded);
                return;
            }
            state.recorder().sessions().insert(
                session_id.to_string(),
                Tracked::Recording(Progress {
                    next_seq: 0,
                    begun: false,
                    truncated: false,
                }),
            );
            if let Err(err) = emit_started(state, session).await {
                tracing::error!(error = format!("{err:#}"), session = %session_id, "emitting recording.started failed");
            }
            (0, false)
        }
    };
    if seq >= MAX_SEGMENTS {
        if let Some(Tracked::Recording(progress)) = state.recorder().sessions().get_mut(session_id)
            && !progress.truncated
        {
            progress.truncated = true;
            tracing::warn!(session = %session_id, "the recording reached {MAX_SEGMENTS} segments; later ones are not recorded");
        }
        return;
    }
    let written = if begun {
        repo::add_segment(state.db(), project_id, session_id, seq, &stored).await
    } else {
        // The recording begins with the first segment the database takes.
        repo::begin(
            state.db(),
            project_id,
            session_id,
            &variant_of(segment),
            &stored,
            now_ms(),
        )
        .await
    };
    match written {
        Ok(()) => {
            if let Some(Tracked::Recording(progress)) =
                state.recorder().sessions().get_mut(session_id)
            {
                progress.next_seq = if begun { seq + 1 } else { 1 };
                progress.begun = true;
            }
        }
        Err(err) => {
            tracing::error!(error = %err, session = %session_id, key = %stored.key, "keeping a recorded segment failed; the recording misses it")
        }
    }
}

/// Session `session_id` ended: a recorded one becomes an asset, processed in the background.
pub async fn session_ended(state: &AppState, project_id: &str, session_id: &str) {
    let Some(Tracked::Recording(progress)) = state.recorder().sessions().remove(session_id) else {
        return;
    };
    if !progress.begun {
        tracing::warn!(session = %session_id, "no segment of the recorded session could be kept: no recording");
        return;
    }
    let now = now_ms();
    match repo::claim(
        state.db(),
        session_id,
        repo::Claim::SessionEnded,
        now,
        now + lease_ms(state),
    )
    .await
    {
        Ok(true) => {}
        // A node that took the session for abandoned is finishing it.
        Ok(false) => return,
        Err(err) => {
            tracing::error!(error = %err, session = %session_id, "taking a recording to process failed; it is retried later");
            return;
        }
    }
    match create_asset(state, project_id, session_id).await {
        Ok(Some(asset)) => {
            state.tasks().spawn(process(state.clone(), asset));
        }
        Ok(None) => {}
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), session = %session_id, "creating a recording asset failed; it is retried later")
        }
    }
}

/// How long a node holds a recording it processes without renewing its hold: the time after
/// which a live stream without segments is taken as abandoned.
fn lease_ms(state: &AppState) -> i64 {
    (state.config().stream_idle_after_secs.max(1) * 1000) as i64
}

/// Renews this node's hold on a recording every third of the lease, until dropped.
struct Lease(tokio::task::JoinHandle<()>);

impl Lease {
    fn hold(state: &AppState, session_id: &str) -> Lease {
        let (state, session_id) = (state.clone(), session_id.to_string());
        Lease(tokio::spawn(async move {
            let lease = lease_ms(&state);
            let every = std::time::Duration::from_millis((lease / 3).max(500) as u64);
            loop {
                tokio::time::sleep(every).await;
                if let Err(err) = repo::renew(state.db(), &session_id, now_ms() + lease).await {
                    tracing::warn!(error = %err, session = %session_id, "renewing the hold on a recording failed");
                }
            }
        }))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn emit_started(state: &AppState, mut session: Session) -> anyhow::Result<()> {
    let now = now_ms();
    session.recording_status = Some(sessions::RecordingStatus::Waiting);
    let mut tx = state.db().begin().await?;
    let stream = streams::repo::get(&mut *tx, &session.project_id, &session.parent_id).await?;
    let payload = serde_json::json!({ "session": session });
    events::emit(
        &mut tx,
        NewEvent {
            project_id: &session.project_id,
            user_id: &session.user_id,
            event: EventType::RecordingStarted,
            stream: stream.as_ref(),
            payload: Some(payload),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    state.wake_webhooks();
    Ok(())
}

/// The recording asset of the session, `waiting`, with `recording.waiting` in the same
/// transaction. `None` if the session is gone or already has its asset.
async fn create_asset(
    state: &AppState,
    project_id: &str,
    session_id: &str,
) -> anyhow::Result<Option<Asset>> {
    let now = now_ms();
    let Some(mut session) = sessions::repo::get(state.db(), project_id, session_id).await? else {
        return Ok(None);
    };
    let mut tx = state.db().begin().await?;
    if assets::repo::get(&mut *tx, project_id, session_id)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let stream = streams::repo::get(&mut *tx, project_id, &session.parent_id).await?;
    let mut asset = Asset {
        id: session.id.clone(),
        user_id: session.user_id.clone(),
        project_id: project_id.to_string(),
        name: format!("live-to-vod-{}", session.id),
        playback_id: String::new(),
        playback_url: None,
        download_url: None,
        // A gated stream's recording is gated the same way.
        playback_policy: stream.as_ref().and_then(|s| s.playback_policy.clone()),
        source: AssetSource::Recording {
            session_id: session.id.clone(),
        },
        creator_id: stream.as_ref().and_then(|s| s.creator_id.clone()),
        created_at: now,
        created_by_token_name: None,
        status: AssetStatus {
            phase: AssetPhase::Waiting,
            updated_at: now,
            progress: None,
            error_message: None,
        },
        size: None,
        video_spec: None,
        files: Vec::new(),
    };
    assets::repo::insert(&mut tx, &mut asset).await?;
    session.recording_status = Some(sessions::RecordingStatus::Waiting);
    let mut session_json = serde_json::to_value(&session)?;
    session_json["assetId"] = serde_json::Value::String(asset.id.clone());
    events::emit(
        &mut tx,
        NewEvent {
            project_id,
            user_id: &session.user_id,
            event: EventType::RecordingWaiting,
            stream: stream.as_ref(),
            payload: Some(serde_json::json!({ "session": session_json })),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    state.wake_webhooks();
    tracing::info!(session = %session_id, asset = %asset.id, playback_id = %asset.playback_id, "recording asset created");
    Ok(Some(asset))
}

/// Turns the asset's segments into playable media and records the outcome. The recording is
/// held while this runs (queued included); if the node stops first, another node, or this
/// one once restarted, processes it again.
async fn process(state: AppState, asset: Asset) {
    let _lease = Lease::hold(&state, &asset.id);
    let Ok(_permit) = state.recorder().processing.acquire().await else {
        return;
    };
    let started = std::time::Instant::now();
    let recording = match repo::load(state.db(), &asset.id).await {
        Ok(Some((recording, _))) => recording,
        Ok(None) => {
            tracing::warn!(asset = %asset.id, "the recording of an asset being processed is gone");
            return;
        }
        Err(err) => {
            tracing::error!(error = %err, asset = %asset.id, "reading a recording failed; it is retried later");
            return;
        }
    };
    let outcome = package(&state, &asset, &recording).await;
    let result = match outcome {
        Ok(media) => finish_ready(&state, &asset, media).await,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), asset = %asset.id, "processing a recording failed");
            finish_failed(&state, &asset, &format!("{err:#}")).await
        }
    };
    match result {
        Ok(()) => {
            tracing::info!(asset = %asset.id, elapsed_ms = started.elapsed().as_millis() as u64, "recording processed")
        }
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), asset = %asset.id, "recording the outcome of a recording failed; it is retried later")
        }
    }
}

/// The packaged media of a recording.
struct Packaged {
    info: MediaInfo,
    mp4_size: u64,
    files: Vec<AssetFile>,
}

/// A scratch directory removed when dropped.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the segments under the asset's playback id with a VOD playlist, and remuxes them into
/// an MP4 beside it. The master playlist is written last: the asset has a playback URL only once
/// everything it lists exists.
async fn package(
    state: &AppState,
    asset: &Asset,
    recording: &Recording,
) -> anyhow::Result<Packaged> {
    let store = state.media_store();
    let pid = &asset.playback_id;
    let work = WorkDir(
        state
            .config()
            .data_dir
            .join("tmp")
            .join(format!("recording-{}", asset.id)),
    );
    tokio::fs::create_dir_all(&work.0)
        .await
        .with_context(|| format!("creating {}", work.0.display()))?;
    let ts_path = work.0.join("source.ts");
    let mut ts_file = tokio::io::BufWriter::new(tokio::fs::File::create(&ts_path).await?);
    let mut playlist = MediaPlaylist::vod();
    let mut total_bytes = 0u64;
    let mut total_s = 0.0;
    let mut peak_bps = 0u64;
    let mut gap = false;
    for (index, segment) in recording.segments.iter().enumerate() {
        let Some(data) = store.get(&segment.key).await? else {
            // A segment whose store write failed live: play over the gap.
            tracing::warn!(key = %segment.key, asset = %asset.id, "a recorded segment is missing; skipping it");
            gap = true;
            continue;
        };
        let name = format!("{index}.ts");
        ts_file.write_all(&data).await?;
        total_bytes += data.len() as u64;
        total_s += segment.duration_s;
        if segment.duration_s > 0.0 {
            peak_bps = peak_bps.max((data.len() as f64 * 8.0 / segment.duration_s) as u64);
        }
        store
            .put(&key(pid, &format!("source/{name}")), data)
            .await?;
        playlist.push(
            name,
            segment.duration_s,
            segment.discontinuity || std::mem::take(&mut gap),
        );
    }
    ts_file.flush().await?;
    drop(ts_file);
    if playlist.is_empty() {
        anyhow::bail!("none of the session's segments could be read from the media store");
    }
    let mp4_path = work.0.join("recording.mp4");
    let media = std::time::Duration::try_from_secs_f64(total_s).unwrap_or_default();
    let info = mp4::remux_and_probe(ts_path.clone(), mp4_path.clone(), media).await?;
    let _ = tokio::fs::remove_file(&ts_path).await;
    let mp4_size = tokio::fs::metadata(&mp4_path).await?.len();
    let video = info.tracks.iter().find(|t| t.kind == TrackKind::Video);
    let mp4_name = match video.and_then(|v| v.height) {
        Some(height) => format!("static{height}p0.mp4"),
        None => "audio.mp4".to_string(),
    };
    let mp4_key = key(pid, &mp4_name);
    store.put_file(&mp4_key, &mp4_path).await?;
    store
        .put(
            &key(pid, "source/index.m3u8"),
            Bytes::from(playlist.render()),
        )
        .await?;
    let average_bps = if total_s > 0.0 {
        (total_bytes as f64 * 8.0 / total_s) as u64
    } else {
        0
    };
    let variant = Variant {
        bandwidth: peak_bps.max(average_bps),
        average_bandwidth: Some(average_bps),
        ..recording.variant.clone()
    };
    let master_key = key(pid, "index.m3u8");
    store
        .put(&master_key, Bytes::from(master_playlist(&[variant])))
        .await?;
    let files = vec![
        AssetFile {
            kind: FileKind::CatalystHlsManifest,
            path: master_key,
            size: None,
            width: None,
            height: None,
            bitrate: None,
        },
        AssetFile {
            kind: FileKind::StaticTranscodedMp4,
            path: mp4_key,
            size: Some(mp4_size as i64),
            width: video.and_then(|v| v.width).map(i64::from),
            height: video.and_then(|v| v.height).map(i64::from),
            bitrate: info.bitrate,
        },
    ];
    Ok(Packaged {
        info,
        mp4_size,
        files,
    })
}

/// The master playlist entry of a recording, from its first segment (bandwidths come at the end).
fn variant_of(segment: &Segment) -> Variant {
    let video = segment
        .video_config
        .as_ref()
        .and_then(|c| AvcConfig::parse(c).ok());
    let audio = segment
        .audio_config
        .as_ref()
        .and_then(|c| AacConfig::parse(c).ok());
    let mut codecs = Vec::new();
    if let Some(video) = &video {
        codecs.push(avc_codec_string(video));
    }
    if let Some(audio) = &audio {
        codecs.push(aac_codec_string(audio));
    }
    let seconds = segment.duration_ms.max(1) as f64 / 1000.0;
    let frames = segment
        .packets
        .iter()
        .filter(|p| p.track == Track::Video)
        .count();
    Variant {
        uri: "source/index.m3u8".into(),
        bandwidth: 0,
        average_bandwidth: None,
        resolution: video
            .as_ref()
            .and_then(|v| v.sps.first())
            .and_then(|sps| sps_resolution(sps)),
        codecs,
        frame_rate: (frames > 0).then(|| (frames as f64 / seconds * 1000.0).round() / 1000.0),
    }
}

fn video_spec(info: &MediaInfo) -> VideoSpec {
    let tracks = info
        .tracks
        .iter()
        .map(|t| VideoTrack {
            kind: match t.kind {
                TrackKind::Video => TrackType::Video,
                TrackKind::Audio => TrackType::Audio,
            },
            codec: t.codec.clone(),
            start_time: t.start_time_s,
            duration: t.duration_s,
            bitrate: t.bitrate.map(|b| b as f64),
            width: t.width.map(i64::from),
            height: t.height.map(i64::from),
            pixel_format: t.pixel_format.clone(),
            fps: t.fps,
            channels: t.channels.map(i64::from),
            sample_rate: t.sample_rate.map(i64::from),
        })
        .collect();
    VideoSpec {
        format: "mp4".into(),
        duration: info.duration_s,
        bitrate: info.bitrate.map(|b| b as f64),
        tracks: Some(tracks),
    }
}

async fn finish_ready(state: &AppState, asset: &Asset, media: Packaged) -> anyhow::Result<()> {
    let now = now_ms();
    let spec = video_spec(&media.info);
    let mut tx = state.db().begin().await?;
    assets::repo::set_ready(
        &mut tx,
        &asset.project_id,
        &asset.id,
        media.mp4_size as i64,
        &spec,
        &media.files,
        now,
    )
    .await?;
    let ready = assets::repo::get(&mut *tx, &asset.project_id, &asset.id)
        .await?
        .context("the asset vanished")?;
    let ready = ready.for_response(state.public_url(), false);
    if let Some(mut session) =
        sessions::repo::get_in(&mut *tx, &asset.project_id, &asset.id).await?
    {
        sessions::describe_recording(&mut session, Some((&ready, false)), now);
        let stream = streams::repo::get(&mut *tx, &asset.project_id, &session.parent_id).await?;
        let payload = serde_json::json!({ "recordingUrl": ready.playback_url, "mp4Url": ready.download_url, "session": session });
        events::emit(
            &mut tx,
            NewEvent {
                project_id: &asset.project_id,
                user_id: &asset.user_id,
                event: EventType::RecordingReady,
                stream: stream.as_ref(),
                payload: Some(payload),
            },
            now,
        )
        .await?;
    }
    repo::forget(&mut tx, &asset.id).await?;
    tx.commit().await?;
    state.wake_webhooks();
    Ok(())
}

async fn finish_failed(state: &AppState, asset: &Asset, error: &str) -> anyhow::Result<()> {
    let now = now_ms();
    let message: String = error.chars().take(512).collect();
    let mut tx = state.db().begin().await?;
    assets::repo::set_phase(
        &mut tx,
        &asset.project_id,
        &asset.id,
        AssetPhase::Failed,
        None,
        Some(&message),
        now,
    )
    .await?;
    let failed = assets::repo::get(&mut *tx, &asset.project_id, &asset.id)
        .await?
        .context("the asset vanished")?;
    let failed = failed.for_response(state.public_url(), false);
    let payload = serde_json::json!({ "asset": { "id": failed.id, "snapshot": failed } });
    events::emit(
        &mut tx,
        NewEvent {
            project_id: &asset.project_id,
            user_id: &asset.user_id,
            event: EventType::AssetFailed,
            stream: None,
            payload: Some(payload),
        },
        now,
    )
    .await?;
    repo::forget(&mut tx, &asset.id).await?;
    tx.commit().await?;
    state.wake_webhooks();
    Ok(())
}
