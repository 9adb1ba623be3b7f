//! HLS output: MPEG-TS segments ([`ts`]), media and master playlists ([`playlist`]), and the
//! codec facts a master playlist advertises (RFC 6381 codec strings, the picture size).

pub mod playlist;
pub mod ts;

use crate::flv::{AacConfig, AvcConfig};
use crate::packet::Track;
use crate::segment::Segment;
use playlist::Variant;

/// The master playlist entry of a rendition at `uri`, from one of its segments: codecs,
/// picture size and frame rate. Bandwidths are left 0 for the caller, who knows more segments.
pub fn variant_of(segment: &Segment, uri: &str) -> Variant {
    let video = segment
        .video_config
        .as_ref()
        .and_then(|c| AvcConfig::parse(c).ok());
    let audio = segment
        .audio_config
        .as_ref()
        .and_then(|c| AacConfig::parse(c).ok());
    let mut codecs = Vec::new();
    if let Some(video) = &video {
        codecs.push(avc_codec_string(video));
    }
    if let Some(audio) = &audio {
        codecs.push(aac_codec_string(audio));
    }
    let seconds = segment.duration_ms.max(1) as f64 / 1000.0;
    let frames = segment
        .packets
        .iter()
        .filter(|p| p.track == Track::Video)
        .count();
    Variant {
        uri: uri.into(),
        bandwidth: 0,
        average_bandwidth: None,
        resolution: video
            .as_ref()
            .and_then(|v| v.sps.first())
            .and_then(|sps| sps_resolution(sps)),
        codecs,
        frame_rate: (frames > 0).then(|| (frames as f64 / seconds * 1000.0).round() / 1000.0),
    }
}

/// The RFC 6381 codec string of an H.264 stream, e.g. `avc1.64001f`: profile, constraint
/// flags and level. They are read from the first SPS (bytes 1 to 3 after the NAL header),
/// which the record's own profile and level bytes copy; the record is used only if the SPS is
/// too short, with the constraint flags then unknown and left 0.
pub fn avc_codec_string(config: &AvcConfig) -> String {
    match config.sps.first().and_then(|sps| sps.get(1..4)) {
        Some(b) => format!("avc1.{:02x}{:02x}{:02x}", b[0], b[1], b[2]),
        None => format!("avc1.{:02x}00{:02x}", config.profile, config.level),
    }
}

/// The RFC 6381 codec string of an AAC stream, `mp4a.40.<audio object type>` (`mp4a.40.2` for
/// AAC-LC).
pub fn aac_codec_string(config: &AacConfig) -> String {
    format!("mp4a.40.{}", config.object_type)
}

/// Displayed picture size of an H.264 sequence parameter set (NAL unit, header byte
/// included), after frame cropping. `None` if the SPS is truncated or malformed.
pub fn sps_resolution(sps: &[u8]) -> Option<(u32, u32)> {
    let rbsp = unescape(sps.get(1..)?);
    let mut r = Bits {
        data: &rbsp,
        pos: 0,
    };
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    // High profiles carry chroma and bit depth fields, and maybe scaling lists, first.
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_map_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let width = width_mbs.checked_mul(16)?;
    let height = height_map_units.checked_mul(16 * field_factor)?;
    if !r.bit()? {
        return Some((width, height));
    }
    let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    // Crop offsets count chroma samples (H.264 7.4.2.1.1, CropUnitX/CropUnitY).
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (unit_x, unit_y) = match chroma_array_type {
        0 | 3 => (1, field_factor),
        1 => (2, 2 * field_factor),
        _ => (2, field_factor),
    };
    let crop_x = left.checked_add(right)?.checked_mul(unit_x)?;
    let crop_y = top.checked_add(bottom)?.checked_mul(unit_y)?;
    Some((width.checked_sub(crop_x)?, height.checked_sub(crop_y)?))
}

fn skip_scaling_list(r: &mut Bits<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + i64::from(r.se()?)).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Removes emulation prevention bytes (`00 00 03` becomes `00 00`).
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// MSB-first bit reader with Exp-Golomb codes.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.bit()?);
        }
        Some(v)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            // 32 leading zeros would overflow u32; no valid SPS field comes close.
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Some(v as i32)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// x264's SPS for 640x360 High profile level 3.0 (360 is not a multiple of 16, so it is
    /// cropped from 368).
    const SPS_640X360: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
    ];

    fn avc(sps: &[u8]) -> AvcConfig {
        AvcConfig {
            profile: 0x64,
            level: 0x1e,
            nal_length_size: 4,
            sps: vec![Bytes::copy_from_slice(sps)],
            pps: vec![Bytes::from_static(&[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0])],
        }
    }

    #[test]
    fn avc_codec_string_has_profile_constraints_and_level() {
        assert_eq!(avc_codec_string(&avc(SPS_640X360)), "avc1.64001e");
        let baseline = [0x67, 0x42, 0xc0, 0x1f, 0x00];
        assert_eq!(avc_codec_string(&avc(&baseline)), "avc1.42c01f");
        assert_eq!(avc_codec_string(&avc(&[0x67])), "avc1.64001e");
    }

    #[test]
    fn aac_codec_string_is_the_object_type() {
        let lc = AacConfig::parse(&[0x12, 0x10]).unwrap();
        assert_eq!(aac_codec_string(&lc), "mp4a.40.2");
        let he = AacConfig {
            object_type: 5,
            sample_rate: 24000,
            channels: 2,
        };
        assert_eq!(aac_codec_string(&he), "mp4a.40.5");
    }

    #[test]
    fn sps_resolution_applies_cropping() {
        assert_eq!(sps_resolution(SPS_640X360), Some((640, 360)));
    }

    #[test]
    fn truncated_sps_has_no_resolution() {
        for n in 0..11 {
            assert_eq!(sps_resolution(&SPS_640X360[..n]), None, "{n} bytes");
        }
    }

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(
            unescape(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 3]
        );
    }
}
