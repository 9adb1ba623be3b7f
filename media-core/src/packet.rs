//! Timestamped media packets, the unit every later stage (segmenter, transcoder, packager)
//! consumes. Timestamps are integer milliseconds on the publisher's clock, widened to `i64` so
//! that the 32-bit RTMP clock can wrap without going backwards.

use bytes::Bytes;

/// Which elementary stream a packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// H.264 video.
    Video,
    /// AAC audio (Opus in the feeds made for WebRTC viewers, `webrtc::feed`).
    Audio,
}

/// What a packet's `data` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// Decoder configuration: an AVCDecoderConfigurationRecord for video, an
    /// AudioSpecificConfig for audio. Later frames of the track need it to decode.
    Config,
    /// One access unit: length-prefixed NAL units (AVCC) for video, one raw AAC frame for audio.
    Frame,
}

/// One demuxed unit of media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The elementary stream.
    pub track: Track,
    /// Configuration or frame.
    pub kind: PacketKind,
    /// Decode timestamp in milliseconds.
    pub dts_ms: i64,
    /// Presentation timestamp in milliseconds (`dts_ms` plus the composition offset; equal to
    /// `dts_ms` for audio).
    pub pts_ms: i64,
    /// True for video frames that start a GOP (an IDR picture). Audio frames are always
    /// decodable on their own but are not marked, so that segment cuts follow video.
    pub keyframe: bool,
    /// The payload, without any FLV tag header.
    pub data: Bytes,
}

impl Packet {
    /// True for a video frame that a decoder can start from.
    pub fn is_video_keyframe(&self) -> bool {
        self.track == Track::Video && self.kind == PacketKind::Frame && self.keyframe
    }
}
