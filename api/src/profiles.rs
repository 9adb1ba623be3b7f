//! Transcoding profiles: the renditions a stream (`ffmpeg-profile`) or a recording or asset
//! (`transcode-profile`) is encoded to.

use serde::{Deserialize, Serialize};
use studio_media_core::transcode::{
    FrameRate, Gop, H264Profile as RenditionH264Profile, RenditionProfile,
};
use utoipa::ToSchema;

use crate::http::json::{integer, opt_integer};
use crate::http::validate::Problems;

pub const MAX_PROFILES: usize = 16;
pub const MAX_DIMENSION: i64 = 8192;
pub const MAX_BITRATE: i64 = 500_000_000;
pub const MAX_FPS: i64 = 240;

/// A live rendition.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = FfmpegProfile)]
pub struct FfmpegProfile {
    /// Unique within the stream; not `source`.
    pub name: String,
    #[serde(deserialize_with = "integer")]
    pub width: i64,
    #[serde(deserialize_with = "integer")]
    pub height: i64,
    /// Bits per second.
    #[serde(deserialize_with = "integer")]
    pub bitrate: i64,
    /// Frames per second; 0 keeps the source rate.
    #[serde(deserialize_with = "integer")]
    pub fps: i64,
    #[serde(
        default,
        deserialize_with = "opt_integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub fps_den: Option<i64>,
    /// Constant quality (0-44, lower is better); overrides bitrate when set.
    #[serde(
        default,
        deserialize_with = "opt_integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub quality: Option<i64>,
    /// Keyframe interval in seconds, as a string (`"2.0"`), or `"intra"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gop: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<H264Profile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<LiveEncoder>,
}

/// A VOD or recording rendition: only the bitrate is required.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = TranscodeProfile)]
pub struct TranscodeProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "opt_integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub width: Option<i64>,
    #[serde(
        default,
        deserialize_with = "opt_integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub height: Option<i64>,
    #[serde(deserialize_with = "integer")]
    pub bitrate: i64,
    #[serde(
        default,
        deserialize_with = "opt_integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub quality: Option<i64>,
    #[serde(
        default,
        deserialize_with = "opt_integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub fps: Option<i64>,
    #[serde(
        default,
        deserialize_with = "opt_integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub fps_den: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gop: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<H264Profile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<VodEncoder>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub enum H264Profile {
    H264Baseline,
    H264Main,
    H264High,
    H264ConstrainedHigh,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub enum LiveEncoder {
    #[serde(rename = "H.264")]
    H264,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub enum VodEncoder {
    #[serde(rename = "H.264")]
    H264,
    #[serde(rename = "HEVC")]
    Hevc,
    #[serde(rename = "VP8")]
    Vp8,
    #[serde(rename = "VP9")]
    Vp9,
}

impl FfmpegProfile {
    /// The profile as the transcoders take it. Validation has bounded every field, so the
    /// conversions cannot truncate; an unparsable `gop` (never stored) means one per segment.
    pub fn to_rendition(&self) -> RenditionProfile {
        let clamp = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        RenditionProfile {
            name: self.name.clone(),
            width: clamp(self.width),
            height: clamp(self.height),
            bitrate: u64::try_from(self.bitrate.max(0)).unwrap_or(0),
            fps: (self.fps > 0).then(|| FrameRate {
                num: clamp(self.fps),
                den: clamp(self.fps_den.unwrap_or(1).max(1)),
            }),
            gop: match self.gop.as_deref() {
                Some("intra") => Gop::Intra,
                Some(seconds) => seconds
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0)
                    .map_or(Gop::Segment, Gop::Seconds),
                None => Gop::Segment,
            },
            profile: match self.profile {
                Some(H264Profile::H264Baseline) => RenditionH264Profile::Baseline,
                Some(H264Profile::H264Main) => RenditionH264Profile::Main,
                Some(H264Profile::H264ConstrainedHigh) => RenditionH264Profile::ConstrainedHigh,
                Some(H264Profile::H264High) | None => RenditionH264Profile::High,
            },
            quality: self.quality.map(|q| q.clamp(0, 51) as u8),
        }
    }
}

impl TranscodeProfile {
    /// The profile as the transcoders take it, for a `source_width` x `source_height` source:
    /// a missing size is the source's, a missing name `{height}p{index}`.
    pub fn to_rendition(
        &self,
        index: usize,
        source_width: u32,
        source_height: u32,
    ) -> RenditionProfile {
        let clamp = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        let width = self.width.map_or(source_width, clamp);
        let height = self.height.map_or(source_height, clamp);
        let live = FfmpegProfile {
            name: self
                .name
                .clone()
                .unwrap_or_else(|| format!("{height}p{index}")),
            width: i64::from(width),
            height: i64::from(height),
            bitrate: self.bitrate,
            fps: self.fps.unwrap_or(0),
            fps_den: self.fps_den,
            quality: self.quality,
            gop: Some(self.gop.clone().unwrap_or_else(|| "2.0".into())),
            profile: self.profile,
            encoder: None,
        };
        live.to_rendition()
    }
}

/// The ladder an asset gets when it names none: 360p, 720p and 1080p at the source frame rate
/// with a keyframe every 2 s (renditions larger than the source are left out).
pub fn default_asset_profiles() -> Vec<RenditionProfile> {
    [
        ("360p0", 640, 360, 1_000_000),
        ("720p0", 1280, 720, 3_000_000),
        ("1080p0", 1920, 1080, 6_000_000),
    ]
    .into_iter()
    .map(|(name, width, height, bitrate)| RenditionProfile {
        name: name.into(),
        width,
        height,
        bitrate,
        fps: None,
        gop: Gop::Seconds(2.0),
        profile: RenditionH264Profile::High,
        quality: None,
    })
    .collect()
}

/// The ladder a stream gets when it names none: 240p, 360p, 480p and 720p at the source frame rate.
pub fn default_stream_profiles() -> Vec<FfmpegProfile> {
    [
        ("240p0", 426, 240, 250_000),
        ("360p0", 640, 360, 800_000),
        ("480p0", 854, 480, 1_600_000),
        ("720p0", 1280, 720, 3_000_000),
    ]
    .into_iter()
    .map(|(name, width, height, bitrate)| FfmpegProfile {
        name: name.into(),
        width,
        height,
        bitrate,
        fps: 0,
        fps_den: None,
        quality: None,
        gop: None,
        profile: Some(H264Profile::H264ConstrainedHigh),
        encoder: None,
    })
    .collect()
}

fn validate_gop(problems: &mut Problems, field: &str, gop: &str) {
    let ok = gop == "intra"
        || gop
            .parse::<f64>()
            .is_ok_and(|g| g.is_finite() && (0.0..=60.0).contains(&g));
    if !ok {
        problems.add(format!(
            "{field} must be \"intra\" or a number of seconds from 0 to 60, as a string (\"2.0\")"
        ));
    }
}

/// Checks a stream's profiles: bounds, unique names, and no profile called `source`.
pub fn validate_ffmpeg_profiles(problems: &mut Problems, field: &str, profiles: &[FfmpegProfile]) {
    if profiles.len() > MAX_PROFILES {
        problems.add(format!("{field} must have at most {MAX_PROFILES} profiles"));
        return;
    }
    for (i, p) in profiles.iter().enumerate() {
        let f = format!("{field}[{i}]");
        problems.text_len(&format!("{f}.name"), &p.name, 1, 500);
        if p.name == "source" {
            problems.add(format!(
                "{f}.name must not be \"source\" (the source rendition is always kept)"
            ));
        }
        if profiles[..i].iter().any(|q| q.name == p.name) {
            problems.add(format!(
                "{f}.name {:?} is used by another profile: names must be unique",
                p.name
            ));
        }
        problems.range(&format!("{f}.width"), p.width, 128, MAX_DIMENSION);
        problems.range(&format!("{f}.height"), p.height, 128, MAX_DIMENSION);
        problems.range(&format!("{f}.bitrate"), p.bitrate, 400, MAX_BITRATE);
        problems.range(&format!("{f}.fps"), p.fps, 0, MAX_FPS);
        if let Some(den) = p.fps_den {
            problems.range(&format!("{f}.fpsDen"), den, 1, 1001);
        }
        if let Some(q) = p.quality {
            problems.range(&format!("{f}.quality"), q, 0, 44);
        }
        if let Some(gop) = &p.gop {
            validate_gop(problems, &format!("{f}.gop"), gop);
        }
    }
}

/// Checks recording or asset profiles.
pub fn validate_transcode_profiles(
    problems: &mut Problems,
    field: &str,
    profiles: &[TranscodeProfile],
) {
    if profiles.len() > MAX_PROFILES {
        problems.add(format!("{field} must have at most {MAX_PROFILES} profiles"));
        return;
    }
    for (i, p) in profiles.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if let Some(name) = &p.name {
            problems.text_len(&format!("{f}.name"), name, 1, 500);
            if profiles[..i].iter().any(|q| q.name.as_ref() == Some(name)) {
                problems.add(format!(
                    "{f}.name {name:?} is used by another profile: names must be unique"
                ));
            }
        }
        if let Some(w) = p.width {
            problems.range(&format!("{f}.width"), w, 128, MAX_DIMENSION);
        }
        if let Some(h) = p.height {
            problems.range(&format!("{f}.height"), h, 128, MAX_DIMENSION);
        }
        problems.range(&format!("{f}.bitrate"), p.bitrate, 400, MAX_BITRATE);
        if let Some(fps) = p.fps {
            problems.range(&format!("{f}.fps"), fps, 0, MAX_FPS);
        }
        if let Some(den) = p.fps_den {
            problems.range(&format!("{f}.fpsDen"), den, 1, 1001);
        }
        if let Some(q) = p.quality {
            problems.range(&format!("{f}.quality"), q, 0, 44);
        }
        if let Some(gop) = &p.gop {
            validate_gop(problems, &format!("{f}.gop"), gop);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ladder_is_valid_and_named_like_studio() {
        let mut problems = Problems::default();
        let ladder = default_stream_profiles();
        validate_ffmpeg_profiles(&mut problems, "profiles", &ladder);
        assert!(problems.0.is_empty(), "{:?}", problems.0);
        let names: Vec<&str> = ladder.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["240p0", "360p0", "480p0", "720p0"]);
    }

    #[test]
    fn messages_name_the_field() {
        let mut p = default_stream_profiles();
        p[0].width = 100;
        p[1].name = "source".into();
        p[2].name = "240p0".into();
        p[3].gop = Some("often".into());
        let mut problems = Problems::default();
        validate_ffmpeg_profiles(&mut problems, "profiles", &p);
        assert_eq!(
            problems.0,
            [
                "profiles[0].width must be >= 128",
                "profiles[1].name must not be \"source\" (the source rendition is always kept)",
                "profiles[2].name \"240p0\" is used by another profile: names must be unique",
                "profiles[3].gop must be \"intra\" or a number of seconds from 0 to 60, as a string (\"2.0\")",
            ]
        );
    }
}
