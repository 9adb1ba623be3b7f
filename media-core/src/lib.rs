//! Media without database or HTTP knowledge.
//!
//! This first slice covers live ingest: RTMP and SRT servers that authorize publishers through a
//! caller-supplied callback ([`ingest`]), FLV and MPEG-TS demuxing into timestamped H.264/AAC
//! packets ([`flv`], [`mpegts`], [`packet`]), and a keyframe-aligned segmenter ([`segment`]). Segments
//! become HLS output through [`hls`]: MPEG-TS segments and media/master playlists.
//! Recordings become progressive-download MP4 files through [`mp4`]; uploaded and imported files
//! are read into the same segments by [`vod`]. Every piece of FFmpeg work
//! runs through [`ffmpeg_job`]: a blocking thread, a deadline, cancellation and metrics.

pub mod ffmpeg_job;
pub mod flv;
pub mod h264;
pub mod hls;
pub mod ingest;
pub mod live_feed;
pub mod mp4;
pub mod mpegts;
pub mod packet;
pub mod segment;
pub mod store;
pub mod transcode;
pub mod vod;
pub mod webrtc;

pub use packet::{Packet, PacketKind, Track};
