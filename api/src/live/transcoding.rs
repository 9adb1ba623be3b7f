//! Transcodes a live session's source segments into its stream's renditions, in order, and
//! packages each rendition as HLS beside the source.
//!
//! The source is listed as soon as it is stored; transcoding runs behind it in its own task,
//! one segment at a time, so renditions lag the source by one transcode. When transcoding
//! cannot keep up, segments beyond a short queue are skipped (and the next one listed is marked
//! as a discontinuity) rather than letting the renditions drift ever further behind live.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use studio_media_core::ffmpeg_job::{self, JobKind};
use studio_media_core::segment::Segment;
use studio_media_core::transcode::local::{EncoderPreference, LocalTranscoder, probe_encoder};
use studio_media_core::transcode::{Rendition, TranscodeJob, Transcoder};
use studio_network_client::gateway::WithFallback;
use tokio::sync::{OwnedMutexGuard, mpsc};
use tokio::task::JoinHandle;

use super::hls_output::RenditionWriter;
use crate::app::AppState;
use crate::clock::now_ms;
use crate::config::{Config, EncoderSetting, TranscodeConfig, TranscoderSetting};
use crate::sessions::repo::{SegmentKind, SegmentStats};

/// Source segments waiting for the transcoder, per session (about 4 s of media).
const QUEUE: usize = 2;

/// Whose renditions these are.
#[derive(Debug, Clone)]
pub struct SessionRef {
    pub id: String,
    pub project_id: String,
    pub stream_id: String,
    pub playback_id: String,
    /// The session's wall clock, shared with its source playlist.
    pub clock: super::hls_output::SessionClock,
}

/// A running transcode of one session.
pub struct TranscodePipeline {
    segments: mpsc::Sender<Arc<Segment>>,
    task: JoinHandle<()>,
    stream_id: String,
}

impl TranscodePipeline {
    /// Starts transcoding into `renditions` (each with its folder name). The renditions of a
    /// stream are written by one session at a time: the task first waits for `renditions_lock`
    /// (held by the previous session's pipeline until its playlists are closed).
    pub fn start(
        state: AppState,
        session: SessionRef,
        renditions: Vec<(String, Rendition)>,
        renditions_lock: Arc<tokio::sync::Mutex<()>>,
        ending: Arc<AtomicBool>,
    ) -> TranscodePipeline {
        let (segments, receiver) = mpsc::channel(QUEUE);
        let stream_id = session.stream_id.clone();
        let task = state.tasks().clone().spawn(async move {
            let guard = renditions_lock.lock_owned().await;
            run(state, session, renditions, receiver, ending, guard).await;
        });
        TranscodePipeline {
            segments,
            task,
            stream_id,
        }
    }

    /// Hands a source segment over; skipped (with a log line) when the transcoder is behind.
    pub fn offer(&self, segment: Arc<Segment>) {
        if let Err(mpsc::error::TrySendError::Full(segment)) = self.segments.try_send(segment) {
            metrics::counter!("studio_transcode_segments_total", "result" => "skipped")
                .increment(1);
            tracing::warn!(stream = %self.stream_id, sequence = segment.sequence, "transcoding is behind live; skipping a segment");
        }
    }

    /// Lets the queued segments finish and closes the rendition playlists, in the background.
    pub fn finish(self) {
        drop(self.segments);
        // The task ends on its own once the queue is drained; nothing waits for it.
        drop(self.task);
    }
}

/// The transcoder `transcode.transcoder` asks for: the bundled one, the Livepeer network, or the
/// network with the bundled one behind it for the segments the network fails on.
pub async fn transcoder(config: &Config) -> anyhow::Result<Arc<dyn Transcoder>> {
    match config.transcode.transcoder {
        TranscoderSetting::Local => bundled_transcoder(&config.transcode).await,
        TranscoderSetting::Network => Ok(Arc::new(super::network::gateway(&config.network).await?)),
        TranscoderSetting::Auto => {
            let network = Arc::new(super::network::gateway(&config.network).await?);
            Ok(Arc::new(WithFallback::new(
                network,
                bundled_transcoder(&config.transcode).await?,
            )))
        }
    }
}

/// Longest the start-up encoder probe may take: a GPU driver that hangs must not keep the server
/// from starting (or from saying why).
const ENCODER_PROBE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// The bundled transcoder with the encoder the configuration asks for, probed once: the choice
/// (and why NVENC was not taken) is logged.
pub async fn bundled_transcoder(config: &TranscodeConfig) -> anyhow::Result<Arc<dyn Transcoder>> {
    let preference = match config.encoder {
        EncoderSetting::Auto => EncoderPreference::Auto,
        EncoderSetting::Nvenc => EncoderPreference::Nvenc,
        EncoderSetting::Libx264 => EncoderPreference::X264,
    };
    let choice = ffmpeg_job::run(JobKind::EncoderProbe, ENCODER_PROBE_DEADLINE, move |_| {
        probe_encoder(preference)
    })
    .await?;
    let concurrency = match config.concurrency {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    match &choice.nvenc_unusable {
        None => tracing::info!(
            encoder = choice.encoder.ffmpeg_name(),
            concurrency,
            "bundled transcoder: NVIDIA NVENC"
        ),
        Some(why) => {
            tracing::info!(encoder = choice.encoder.ffmpeg_name(), concurrency, nvenc = %why, "bundled transcoder: libx264 on the CPU")
        }
    }
    Ok(Arc::new(LocalTranscoder::new(choice.encoder, concurrency)?))
}

async fn run(
    state: AppState,
    session: SessionRef,
    renditions: Vec<(String, Rendition)>,
    mut segments: mpsc::Receiver<Arc<Segment>>,
    ending: Arc<AtomicBool>,
    _renditions_lock: OwnedMutexGuard<()>,
) {
    let transcoder: Arc<dyn Transcoder> = state.transcoder();
    let name = transcoder.name();
    let plan: Arc<[Rendition]> = renditions.iter().map(|(_, r)| r.clone()).collect();
    let mut writers = Vec::with_capacity(renditions.len());
    for (dir, _) in &renditions {
        writers.push(
            RenditionWriter::open(
                state.media_store(),
                &session.playback_id,
                dir,
                &session.id,
                session.clock.clone(),
            )
            .await,
        );
    }
    let stream: Arc<str> = session.stream_id.as_str().into();
    let mut expected: Option<u64> = None;
    while let Some(segment) = segments.recv().await {
        if ending.load(Ordering::Acquire) {
            break;
        }
        if expected.is_some_and(|next| next != segment.sequence) {
            writers.iter_mut().for_each(RenditionWriter::skip);
        }
        expected = Some(segment.sequence + 1);
        let started = Instant::now();
        let job = TranscodeJob {
            stream: stream.clone(),
            segment: segment.clone(),
            renditions: plan.clone(),
        };
        let outputs = match transcoder.transcode(job).await {
            Ok(outputs) => outputs,
            Err(err) => {
                metrics::counter!("studio_transcode_segments_total", "result" => "failed", "transcoder" => name.clone()).increment(1);
                tracing::warn!(stream = %session.stream_id, sequence = segment.sequence, transcoder = %name, error = %err, "transcoding a segment failed");
                writers.iter_mut().for_each(RenditionWriter::skip);
                continue;
            }
        };
        metrics::histogram!("studio_transcode_seconds", "transcoder" => name.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("studio_transcode_segments_total", "result" => "ok", "transcoder" => name.clone()).increment(1);
        if ending.load(Ordering::Acquire) {
            break;
        }
        let mut bytes = 0usize;
        for (writer, output) in writers.iter_mut().zip(&outputs) {
            match writer.push(state.media_store(), output).await {
                Ok(stored) => bytes += stored.bytes,
                Err(err) => {
                    tracing::error!(error = format!("{err:#}"), stream = %session.stream_id, "packaging a rendition segment failed");
                    writer.skip();
                }
            }
        }
        // Written with the node's next batch of statistics.
        state.session_stats().add(
            &session.project_id,
            &session.id,
            &session.stream_id,
            SegmentStats::new(SegmentKind::Transcoded, segment.duration_ms, bytes as u64),
            now_ms(),
        );
    }
    transcoder.stream_ended(&stream);
    // Complete statistics before the rendition playlists end.
    if let Err(err) = state
        .session_stats()
        .write_now(state.db(), &session.id)
        .await
    {
        tracing::error!(
            error = format!("{err:#}"),
            "writing transcode statistics failed"
        );
    }
    for writer in &mut writers {
        if let Err(err) = writer.end(state.media_store()).await {
            tracing::error!(
                error = format!("{err:#}"),
                "closing a rendition playlist failed"
            );
        }
    }
}
