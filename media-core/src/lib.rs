//! Media without database or HTTP knowledge.
//!
//! This first slice covers live ingest: an RTMP server that authorizes publishers through a
//! caller-supplied callback ([`ingest::rtmp`]), FLV tag demuxing into timestamped H.264/AAC
//! packets ([`flv`], [`packet`]), and a keyframe-aligned segmenter ([`segment`]). Segments
//! become HLS output through [`hls`]: MPEG-TS segments and media/master playlists.
//! Recordings become progressive-download MP4 files through [`mp4`].

pub mod flv;
pub mod hls;
pub mod ingest;
pub mod mp4;
pub mod packet;
pub mod segment;
pub mod store;

pub use packet::{Packet, PacketKind, Track};
