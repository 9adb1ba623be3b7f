//! Media without database or HTTP knowledge.
//!
//! This first slice covers live ingest: an RTMP server that authorizes publishers through a
//! caller-supplied callback ([`ingest::rtmp`]), FLV tag demuxing into timestamped H.264/AAC
//! packets ([`flv`], [`packet`]), and a keyframe-aligned segmenter ([`segment`]).

pub mod flv;
pub mod ingest;
pub mod packet;
pub mod segment;

pub use packet::{Packet, PacketKind, Track};
