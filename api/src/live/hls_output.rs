//! Packages a session's source segments as HLS in the media store: an MPEG-TS file per segment,
//! a sliding media playlist while live (closed with `EXT-X-ENDLIST` when the session ends), and
//! the master playlist players open first.

use axum::body::Bytes;
use studio_media_core::flv::{AacConfig, AvcConfig};
use studio_media_core::hls::playlist::{MediaPlaylist, Variant, master_playlist as render_master};
use studio_media_core::hls::{aac_codec_string, avc_codec_string, sps_resolution};
use studio_media_core::packet::Track;
use studio_media_core::hls::ts::TsMuxer;
use studio_media_core::segment::Segment;
use studio_media_core::store::ObjectStore;

use crate::playback::hls::key;

/// Segments listed in the live playlist (about 12 s at the 2 s target).
const WINDOW: usize = 6;

pub struct HlsOutput {
    playback_id: String,
    /// Prefix of segment names, unique per session: segment files are cached as immutable, so a
    /// name is never reused by the next session.
    tag: String,
    muxer: TsMuxer,
    playlist: MediaPlaylist,
    wrote_master: bool,
}

impl HlsOutput {
    pub fn new(playback_id: &str, session_id: &str) -> HlsOutput {
        HlsOutput {
            playback_id: playback_id.to_string(),
            tag: session_id.chars().filter(char::is_ascii_alphanumeric).take(8).collect(),
            muxer: TsMuxer::new(),
            playlist: MediaPlaylist::new(WINDOW),
            wrote_master: false,
        }
    }

    /// Stores the segment, then lists it: a player never sees a name it cannot fetch.
    pub async fn push(&mut self, store: &dyn ObjectStore, segment: &Segment) -> anyhow::Result<String> {
        let ts = self.muxer.mux(segment)?;
        let ts_len = ts.len();
        let name = format!("{}_{}.ts", self.tag, segment.sequence);
        let segment_key = key(&self.playback_id, &format!("source/{name}"));
        store.put(&segment_key, ts).await?;
        self.playlist.push(name, segment.duration_ms.max(0) as f64 / 1000.0, segment.discontinuity);
        store.put(&key(&self.playback_id, "source/index.m3u8"), Bytes::from(self.playlist.render())).await?;
        if !self.wrote_master {
            let master = master_playlist(segment, ts_len);
            store.put(&key(&self.playback_id, "index.m3u8"), Bytes::from(master)).await?;
            self.wrote_master = true;
        }
        Ok(segment_key)
    }

    /// Closes the media playlist: the session is over.
    pub async fn end(&mut self, store: &dyn ObjectStore) -> anyhow::Result<()> {
        self.playlist.end();
        store.put(&key(&self.playback_id, "source/index.m3u8"), Bytes::from(self.playlist.render())).await?;
        Ok(())
    }
}

/// The master playlist, described from the first segment: codecs and resolution from the codec
/// configs, frame rate from the frames, bandwidth from the muxed size (with a margin for the
/// segments to come).
fn master_playlist(segment: &Segment, ts_len: usize) -> String {
    let video = segment.video_config.as_ref().and_then(|c| AvcConfig::parse(c).ok());
    let audio = segment.audio_config.as_ref().and_then(|c| AacConfig::parse(c).ok());
    let mut codecs = Vec::new();
    if let Some(video) = &video {
        codecs.push(avc_codec_string(video));
    }
    if let Some(audio) = &audio {
        codecs.push(aac_codec_string(audio));
    }
    let seconds = (segment.duration_ms.max(1) as f64) / 1000.0;
    let average = (ts_len as f64 * 8.0 / seconds) as u64;
    let frames = segment.packets.iter().filter(|p| p.track == Track::Video).count();
    let variant = Variant {
        uri: "source/index.m3u8".into(),
        bandwidth: average + average / 4,
        average_bandwidth: Some(average),
        resolution: video.as_ref().and_then(|v| v.sps.first()).and_then(|sps| sps_resolution(sps)),
        codecs,
        frame_rate: (frames > 0).then(|| (frames as f64 / seconds * 1000.0).round() / 1000.0),
    };
    render_master(&[variant])
}
