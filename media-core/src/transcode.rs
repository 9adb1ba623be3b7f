//! Transcoding: turning one source segment into one encoded segment per rendition.
//!
//! [`Transcoder`] is the interface the live pipeline calls for every segment; it is implemented
//! by the bundled FFmpeg transcoder ([`local`]) and by the Livepeer network gateway (in the
//! `network-client` crate). Each call is independent of the previous one (every output
//! segment starts with a keyframe and decodes on its own), which lets a caller move a stream
//! between transcoders segment by segment.
//!
//! [`plan`] decides which renditions a source can have and at what picture size: renditions
//! keep the source's aspect ratio inside the profile's box and are never upscaled.

pub mod audio;
pub mod local;
pub mod plan;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use plan::{FrameRate, Gop, H264Profile, Rendition, RenditionProfile, plan_renditions};

use crate::ffmpeg_job::JobError;
use crate::segment::Segment;

/// One segment to transcode.
#[derive(Debug, Clone)]
pub struct TranscodeJob {
    /// Identifies the stream the segment belongs to (a transcoder may keep per-stream state,
    /// such as a payment session with an orchestrator). Opaque to the transcoder.
    pub stream: Arc<str>,
    /// The source segment: H.264 video (AVCC, with its decoder configuration) and optional AAC.
    pub segment: Arc<Segment>,
    /// The renditions to produce, with their exact picture sizes (see [`plan_renditions`]).
    pub renditions: Arc<[Rendition]>,
}

/// The outcome of a job: one segment per rendition, in the job's order, each with the source's
/// sequence number, start, duration and discontinuity flag, H.264 video (AVCC with a decoder
/// configuration) and the source's audio.
pub type TranscodeOutput = Vec<Segment>;

/// A boxed future, so that transcoders can be chosen at run time (`dyn Transcoder`).
pub type TranscodeFuture =
    Pin<Box<dyn Future<Output = Result<TranscodeOutput, TranscodeError>> + Send>>;

/// Produces the renditions of source segments.
pub trait Transcoder: Send + Sync + 'static {
    /// A short name for logs and metrics (`local/libx264`, `network`).
    fn name(&self) -> String;

    /// Transcodes one segment. The future owns everything it needs.
    fn transcode(&self, job: TranscodeJob) -> TranscodeFuture;

    /// Says that `stream` sends no more segments for now, so per-stream state (an orchestrator
    /// session, its credit) can be released. A later segment of the stream starts afresh.
    fn stream_ended(&self, stream: &str) {
        let _ = stream;
    }
}

/// Why a segment could not be transcoded. The segment's source stays playable either way.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The source segment has no video, or its decoder configuration is unusable.
    #[error("the source cannot be transcoded: {0}")]
    Source(String),
    /// The decoder, scaler or an encoder failed.
    #[error("{stage} failed: {message}")]
    Codec {
        stage: &'static str,
        message: String,
    },
    /// No orchestrator of the Livepeer network transcoded the segment.
    #[error("the network did not transcode the segment: {0}")]
    Network(String),
    /// The transcoder is shutting down or its worker went away.
    #[error("the transcoder is not available: {0}")]
    Unavailable(String),
    /// The segment was not done by its deadline, or its caller cancelled it.
    #[error(transparent)]
    Job(#[from] JobError),
}

impl TranscodeError {
    pub(crate) fn codec(stage: &'static str, err: impl std::fmt::Display) -> Self {
        TranscodeError::Codec {
            stage,
            message: err.to_string(),
        }
    }
}
