//! Packages a session's segments as HLS in the media store: for the source and for every
//! transcoded rendition an MPEG-TS file per segment and a sliding media playlist (closed with
//! `EXT-X-ENDLIST` when the session ends), and the master playlist players open first.
//!
//! Layout under `hls/{playbackId}/`: `index.m3u8` (master), `source/index.m3u8` and its
//! segments, `{rendition}/index.m3u8` and its segments. Every segment is listed with its
//! `EXT-X-PROGRAM-DATE-TIME`, the same in every rendition ([`SessionClock`]).

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use studio_media_core::flv::{AacConfig, AvcConfig};
use studio_media_core::hls::playlist::{MediaPlaylist, Variant, master_playlist as render_master};
use studio_media_core::hls::ts::TsMuxer;
use studio_media_core::hls::{aac_codec_string, avc_codec_string, sps_resolution};
use studio_media_core::packet::Track;
use studio_media_core::segment::Segment;
use studio_media_core::store::ObjectStore;
use studio_media_core::transcode::Rendition;

use crate::clock::now_ms;
use crate::playback::hls::key;

/// Segments listed in a live playlist (about 12 s at the 2 s target).
const WINDOW: usize = 6;
/// The folder of the source rendition.
pub const SOURCE_DIR: &str = "source";

/// Maps a session's media time to wall-clock time, the same for its source and every rendition,
/// so players (and clips) can tell the time of any moment: set by the first segment written,
/// whose first frame arrived about its duration ago.
#[derive(Debug, Clone, Default)]
pub struct SessionClock(Arc<OnceLock<(i64, i64)>>);

impl SessionClock {
    /// The wall-clock time (unix ms) of the segment's first frame.
    pub fn program_date(&self, segment: &Segment) -> i64 {
        let (wall, media) = *self
            .0
            .get_or_init(|| (now_ms() - segment.duration_ms.max(0), segment.start_ms));
        wall + (segment.start_ms - media)
    }
}

/// One rendition's playlist and segments.
pub struct RenditionWriter {
    playback_id: String,
    dir: String,
    /// Prefix of segment names, unique per session: segment files are cached as immutable, so a
    /// name is never reused by the next session.
    tag: String,
    muxer: TsMuxer,
    playlist: MediaPlaylist,
    /// A segment was skipped (not transcoded in time, or failed): the next one listed does not
    /// continue the previous one.
    after_gap: bool,
    clock: SessionClock,
}

/// A segment as stored: its object key, muxed size and the wall-clock time of its first frame
/// (unix ms).
#[derive(Debug, Clone)]
pub struct StoredSegment {
    pub key: String,
    pub bytes: usize,
    pub program_date_ms: i64,
}

impl RenditionWriter {
    /// The writer of a new session's rendition. If the stream's playlist of this rendition
    /// is in the store (an earlier session: the encoder reconnected), it is continued, with
    /// `EXT-X-DISCONTINUITY` before the first new segment; else a new one begins.
    pub async fn open(
        store: &dyn ObjectStore,
        playback_id: &str,
        dir: &str,
        session_id: &str,
        clock: SessionClock,
    ) -> RenditionWriter {
        let previous = match store
            .get(&key(playback_id, &format!("{dir}/index.m3u8")))
            .await
        {
            Ok(previous) => previous,
            Err(err) => {
                tracing::warn!(error = %err, playback_id, dir, "reading the previous playlist failed; starting a new one");
                None
            }
        };
        let resumed = previous
            .and_then(|text| MediaPlaylist::resume(std::str::from_utf8(&text).ok()?, WINDOW));
        RenditionWriter {
            playback_id: playback_id.to_string(),
            dir: dir.to_string(),
            tag: session_id
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(8)
                .collect(),
            muxer: TsMuxer::new(),
            after_gap: resumed.is_some(),
            playlist: resumed.unwrap_or_else(|| MediaPlaylist::new(WINDOW)),
            clock,
        }
    }

    /// Stores the segment, then lists it: a player never sees a name it cannot fetch.
    pub async fn push(
        &mut self,
        store: &dyn ObjectStore,
        segment: &Segment,
    ) -> anyhow::Result<StoredSegment> {
        let ts = self.muxer.mux(segment)?;
        let bytes = ts.len();
        let name = format!("{}_{}.ts", self.tag, segment.sequence);
        let object = key(&self.playback_id, &format!("{}/{name}", self.dir));
        store.put(&object, ts).await?;
        let program_date_ms = self.clock.program_date(segment);
        self.playlist.push_at(
            name,
            segment.duration_ms.max(0) as f64 / 1000.0,
            segment.discontinuity || self.after_gap,
            Some(program_date_ms),
        );
        self.after_gap = false;
        self.write_playlist(store).await?;
        Ok(StoredSegment {
            key: object,
            bytes,
            program_date_ms,
        })
    }

    /// Notes a segment that will not be listed: the next one is marked as a discontinuity.
    pub fn skip(&mut self) {
        self.after_gap = true;
    }

    /// Closes the media playlist: the session is over.
    pub async fn end(&mut self, store: &dyn ObjectStore) -> anyhow::Result<()> {
        self.playlist.end();
        self.write_playlist(store).await
    }

    async fn write_playlist(&self, store: &dyn ObjectStore) -> anyhow::Result<()> {
        let object = key(&self.playback_id, &format!("{}/index.m3u8", self.dir));
        store
            .put(&object, Bytes::from(self.playlist.render()))
            .await?;
        Ok(())
    }
}

/// The folder of a transcoded rendition: its profile name when that is a safe path segment,
/// else its position.
pub fn rendition_dir(index: usize, rendition: &Rendition) -> String {
    let name = rendition.name();
    let safe = (1..=64).contains(&name.len())
        && name != SOURCE_DIR
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if safe {
        name.to_string()
    } else {
        format!("rendition{index}")
    }
}

/// Writes the master playlist: the source first (players start with the first variant, and
/// the source is playable before any transcode finishes), then each rendition. The source is
/// described from its first segment (codecs and resolution from the codec configs, frame rate
/// from the frames, bandwidth from the muxed size with a margin for the segments to come); the
/// renditions from their plan.
pub async fn write_master(
    store: &dyn ObjectStore,
    playback_id: &str,
    first: &Segment,
    first_ts_bytes: usize,
    renditions: &[(String, Rendition)],
) -> anyhow::Result<()> {
    let video = first
        .video_config
        .as_ref()
        .and_then(|c| AvcConfig::parse(c).ok());
    let audio = first
        .audio_config
        .as_ref()
        .and_then(|c| AacConfig::parse(c).ok());
    let seconds = (first.duration_ms.max(1) as f64) / 1000.0;
    let source_fps = first
        .video_frame_rate()
        .map(|fps| (fps * 1000.0).round() / 1000.0);
    let audio_codec = audio.as_ref().map(aac_codec_string);
    let audio_bits: u64 = first
        .packets
        .iter()
        .filter(|p| p.track == Track::Audio)
        .map(|p| p.data.len() as u64 * 8)
        .sum();
    let audio_rate = (audio_bits as f64 / seconds) as u64;

    let mut codecs: Vec<String> = video.as_ref().map(avc_codec_string).into_iter().collect();
    codecs.extend(audio_codec.clone());
    let average = (first_ts_bytes as f64 * 8.0 / seconds) as u64;
    let mut variants = vec![Variant {
        uri: format!("{SOURCE_DIR}/index.m3u8"),
        bandwidth: average + average / 4,
        average_bandwidth: Some(average),
        resolution: video
            .as_ref()
            .and_then(|v| v.sps.first())
            .and_then(|sps| sps_resolution(sps)),
        codecs,
        frame_rate: source_fps,
    }];
    for (dir, rendition) in renditions {
        // MPEG-TS adds about 10 % to the elementary streams.
        let average = (rendition.profile.bitrate + audio_rate) * 11 / 10;
        let mut codecs = vec![rendition.codec_string()];
        codecs.extend(audio_codec.clone());
        variants.push(Variant {
            uri: format!("{dir}/index.m3u8"),
            bandwidth: average + average / 4,
            average_bandwidth: Some(average),
            resolution: Some((rendition.width, rendition.height)),
            codecs,
            frame_rate: rendition
                .profile
                .fps
                .map(|f| (f.as_f64() * 1000.0).round() / 1000.0)
                .or(source_fps),
        });
    }
    store
        .put(
            &key(playback_id, "index.m3u8"),
            Bytes::from(render_master(&variants)),
        )
        .await?;
    Ok(())
}
