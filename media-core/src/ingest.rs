//! Servers that accept live media from encoders.

pub mod rtmp;
