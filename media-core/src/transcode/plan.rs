//! Which renditions a source gets, and their exact encoding parameters.
//!
//! A profile names a box (`width` x `height`); the rendition keeps the source's aspect ratio
//! inside it, with even dimensions (4:2:0 needs them). A profile whose box would enlarge the
//! source is skipped: upscaling spends bits and CPU on no extra detail.

use crate::h264::level_for;

/// The H.264 profile of a rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum H264Profile {
    Baseline,
    Main,
    #[default]
    High,
    /// High without B-frames.
    ConstrainedHigh,
}

impl H264Profile {
    /// `profile_idc` as the SPS carries it.
    pub fn idc(self) -> u8 {
        match self {
            H264Profile::Baseline => 66,
            H264Profile::Main => 77,
            H264Profile::High | H264Profile::ConstrainedHigh => 100,
        }
    }

    /// Whether the profile allows B-frames.
    pub fn b_frames(self) -> bool {
        matches!(self, H264Profile::Main | H264Profile::High)
    }
}

/// How often a rendition has a keyframe. Every segment starts with one regardless.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Gop {
    /// One keyframe per segment.
    #[default]
    Segment,
    /// A keyframe every so many seconds.
    Seconds(f64),
    /// Every frame is a keyframe.
    Intra,
}

/// A frame rate as a fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRate {
    pub num: u32,
    pub den: u32,
}

impl FrameRate {
    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den.max(1))
    }
}

/// A rendition as a stream's profile asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionProfile {
    /// Unique within the stream; names the rendition's playlist folder.
    pub name: String,
    /// The box the picture must fit in.
    pub width: u32,
    pub height: u32,
    /// Target bits per second of the video.
    pub bitrate: u64,
    /// `None` keeps the source's frame rate.
    pub fps: Option<FrameRate>,
    pub gop: Gop,
    pub profile: H264Profile,
    /// Constant quality (x264 CRF) instead of a bitrate target.
    pub quality: Option<u8>,
}

/// A planned rendition: the profile with the exact picture size and level it will have.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    pub profile: RenditionProfile,
    pub width: u32,
    pub height: u32,
    /// H.264 `level_idc` (31 is level 3.1), from the size and frame rate.
    pub level: u8,
}

impl Rendition {
    pub fn name(&self) -> &str {
        &self.profile.name
    }

    /// The RFC 6381 codec string the rendition's video will have (`avc1.64001f`). The
    /// constraint byte is what libx264 writes: baseline is constrained baseline, main sets
    /// constraint_set1.
    pub fn codec_string(&self) -> String {
        let constraints = match self.profile.profile {
            H264Profile::Baseline => 0xc0,
            H264Profile::Main => 0x40,
            H264Profile::High | H264Profile::ConstrainedHigh => 0x00,
        };
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile.profile.idc(),
            constraints,
            self.level
        )
    }
}

/// The renditions `profiles` give for a `source_width` x `source_height` source at
/// `source_fps` frames per second, in the profiles' order, without the ones that would
/// upscale.
pub fn plan_renditions(
    source_width: u32,
    source_height: u32,
    source_fps: f64,
    profiles: &[RenditionProfile],
) -> Vec<Rendition> {
    if source_width == 0 || source_height == 0 {
        return Vec::new();
    }
    profiles
        .iter()
        .filter_map(|profile| {
            let (width, height) = fit(source_width, source_height, profile.width, profile.height)?;
            let fps = profile.fps.map_or(source_fps, FrameRate::as_f64);
            Some(Rendition {
                profile: profile.clone(),
                width,
                height,
                level: level_for(width, height, fps),
            })
        })
        .collect()
}

/// The largest even size with the source's aspect ratio inside the box; `None` if that is
/// larger than the source or degenerate.
fn fit(
    source_width: u32,
    source_height: u32,
    box_width: u32,
    box_height: u32,
) -> Option<(u32, u32)> {
    let (sw, sh, bw, bh) = (
        f64::from(source_width),
        f64::from(source_height),
        f64::from(box_width),
        f64::from(box_height),
    );
    let scale = (bw / sw).min(bh / sh);
    if scale > 1.0 || !scale.is_finite() {
        return None;
    }
    let even = |v: f64| ((v / 2.0).round() as u32 * 2).max(2);
    let (width, height) = (
        even(sw * scale).min(box_width.max(2)),
        even(sh * scale).min(box_height.max(2)),
    );
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str, width: u32, height: u32) -> RenditionProfile {
        RenditionProfile {
            name: name.into(),
            width,
            height,
            bitrate: 500_000,
            fps: None,
            gop: Gop::Segment,
            profile: H264Profile::High,
            quality: None,
        }
    }

    #[test]
    fn the_default_ladder_on_a_720p_source() {
        let ladder = [
            profile("240p0", 426, 240),
            profile("360p0", 640, 360),
            profile("480p0", 854, 480),
            profile("720p0", 1280, 720),
        ];
        let plan = plan_renditions(1280, 720, 30.0, &ladder);
        let sizes: Vec<_> = plan.iter().map(|r| (r.name(), r.width, r.height)).collect();
        assert_eq!(
            sizes,
            [
                ("240p0", 426, 240),
                ("360p0", 640, 360),
                ("480p0", 854, 480),
                ("720p0", 1280, 720)
            ]
        );
        assert_eq!(plan[0].codec_string(), "avc1.640015");
    }

    #[test]
    fn no_upscaling_and_aspect_kept() {
        let ladder = [profile("240p0", 426, 240), profile("720p0", 1280, 720)];
        let plan = plan_renditions(640, 360, 30.0, &ladder);
        assert_eq!(plan.len(), 1);
        // A portrait source fits the landscape box by height.
        let plan = plan_renditions(720, 1280, 30.0, &ladder);
        assert_eq!((plan[0].width, plan[0].height), (136, 240));
        assert_eq!((plan[1].width, plan[1].height), (406, 720));
        assert!(plan_renditions(0, 0, 30.0, &ladder).is_empty());
    }
}
