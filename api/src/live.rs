//! Live ingest inside the server: media-core's RTMP, SRT and WebRTC (WHIP) servers, authorized
//! against the database, and each publish turned into a session whose segments update the stream's statistics and state.
//! Renditions come from the bundled transcoder or, through [`network`], from the Livepeer network.
//! [`webrtc`] serves WHIP publishers and WHEP viewers over HTTP.

pub mod hls_output;
pub mod ingest;
pub mod network;
pub mod registry;
pub mod sweeper;
pub mod transcoding;
pub mod webrtc;
