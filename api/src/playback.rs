//! Playback: where to play a playback id (`info`), and serving its HLS (`hls`).

pub mod hls;
pub mod info;
