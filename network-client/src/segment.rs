//! One segment's trip to an orchestrator (§3.4, §3.5): the profiles and `SegData` that go with it, the
//! `TranscodeResult` that comes back, and the renditions turned back into [`Segment`]s.

use alloy::primitives::{B256, keccak256};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use prost::Message;
use studio_media_core::mpegts;
use studio_media_core::packet::{Packet, PacketKind, Track};
use studio_media_core::segment::Segment;
use studio_media_core::transcode::{Gop, H264Profile, Rendition};

use crate::capabilities::job_capabilities;
use crate::credentials::SegmentClaim;
use crate::orchestrator::Identity;
use crate::pm::{OutputProfile, SignatureError};
use crate::proto::{self, video_profile};

/// The orchestrator's view of a rendition.
pub fn video_profile(rendition: &Rendition) -> proto::VideoProfile {
    let p = &rendition.profile;
    let (fps, fps_den) = match p.fps {
        None => (0, 0),
        Some(rate) if rate.den <= 1 => (rate.num, 0),
        Some(rate) => (rate.num, rate.den),
    };
    let profile = match p.profile {
        H264Profile::Baseline => video_profile::Profile::H264Baseline,
        H264Profile::Main => video_profile::Profile::H264Main,
        H264Profile::High => video_profile::Profile::H264High,
        H264Profile::ConstrainedHigh => video_profile::Profile::H264ConstrainedHigh,
    };
    let gop = match p.gop {
        Gop::Segment => 0,
        Gop::Intra => video_profile::GOP_INTRA_ONLY,
        Gop::Seconds(s) => (s * 1000.0).round().clamp(1.0, f64::from(i32::MAX)) as i32,
    };
    proto::VideoProfile {
        name: p.name.clone(),
        width: rendition.width as i32,
        height: rendition.height as i32,
        bitrate: i32::try_from(p.bitrate).unwrap_or(i32::MAX),
        fps,
        format: video_profile::Format::Mpegts as i32,
        fps_den,
        profile: profile as i32,
        gop,
        encoder: video_profile::VideoCodec::H264 as i32,
        color_depth: 0,
        chroma_format: video_profile::ChromaSubsampling::Chroma420 as i32,
        quality: p.quality.map_or(0, u32::from),
    }
}

/// What the fee estimate counts of a rendition.
pub fn billed_profile(rendition: &Rendition) -> OutputProfile {
    let (fps, fps_den) = rendition
        .profile
        .fps
        .map_or((0, 0), |rate| (rate.num, rate.den));
    OutputProfile {
        width: rendition.width,
        height: rendition.height,
        fps,
        fps_den,
    }
}

/// A segment ready to go: its body and the `SegData` describing it.
#[derive(Debug, Clone)]
pub struct SegmentRequest {
    /// The MPEG-TS body.
    pub body: Bytes,
    /// The `Livepeer-Segment` message.
    pub seg_data: proto::SegData,
}

impl SegmentRequest {
    /// Describes and signs `body` (segment `seq` of `manifest_id`, `duration_ms` long) for `profiles`.
    /// The profiles go in `fullProfiles` when go-livepeer would put them there (MPEG-TS, integer frame rates, the
    /// default H.264 profile and GOP) and in `fullProfiles3` otherwise.
    pub fn new(
        identity: &Identity,
        manifest_id: &str,
        seq: u64,
        duration_ms: i64,
        body: Bytes,
        profiles: Vec<proto::VideoProfile>,
        auth_token: proto::AuthToken,
    ) -> Result<Self, SignatureError> {
        let hash = keccak256(&body);
        let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        let sig = match identity.signer() {
            None => Vec::new(),
            Some(signer) => SegmentClaim {
                manifest_id,
                seq,
                data_hash: hash,
                profile_names: &names,
            }
            .sign(signer)?
            .as_bytes()
            .to_vec(),
        };
        let capabilities = job_capabilities(&profiles);
        let simple = profiles.iter().all(|p| {
            p.format == video_profile::Format::Mpegts as i32
                && p.fps_den == 0
                && p.profile == video_profile::Profile::EncoderDefault as i32
                && p.gop == 0
        });
        let (full_profiles, full_profiles3) = if simple {
            (profiles, Vec::new())
        } else {
            (Vec::new(), profiles)
        };
        let seg_data = proto::SegData {
            manifest_id: manifest_id.as_bytes().to_vec(),
            seq: seq as i64,
            hash: hash.to_vec(),
            profiles: b"invalid".to_vec(),
            sig,
            duration: i32::try_from(duration_ms.max(0)).unwrap_or(i32::MAX),
            capabilities: Some(capabilities),
            auth_token: Some(auth_token),
            full_profiles,
            full_profiles3,
            ..Default::default()
        };
        Ok(Self { body, seg_data })
    }

    /// The body's keccak256, as `SegData.hash` carries it.
    pub fn hash(&self) -> B256 {
        B256::from_slice(&self.seg_data.hash)
    }
}

/// A protobuf message as a header value: standard base64 with padding.
pub fn header(message: &impl Message) -> String {
    STANDARD.encode(message.encode_to_vec())
}

/// Why renditions could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum RenditionError {
    /// The bytes are not MPEG-TS the pipeline can carry.
    #[error("rendition {name} is not usable MPEG-TS: {reason}")]
    Demux {
        /// The rendition.
        name: String,
        /// Why.
        reason: String,
    },
    /// The rendition has no video frame.
    #[error("rendition {0} has no video")]
    NoVideo(String),
}

/// Reads a rendition returned for `source` back into a segment with the source's sequence, timing and
/// discontinuity flag. Timestamps are moved so that the rendition's first picture is presented when the source's
/// is: the gateway muxes each segment on its own and orchestrators may re-base timestamps.
pub fn rendition_segment(
    name: &str,
    source: &Segment,
    ts: &[u8],
) -> Result<Segment, RenditionError> {
    let mut packets = mpegts::demux_file(ts).map_err(|e| RenditionError::Demux {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    let rendition_start =
        first_picture(&packets).ok_or_else(|| RenditionError::NoVideo(name.to_owned()))?;
    let source_start = first_picture(&source.packets).unwrap_or(source.start_ms);
    let shift = source_start - rendition_start;
    for p in &mut packets {
        p.dts_ms += shift;
        p.pts_ms += shift;
    }
    packets.sort_by_key(|p| p.dts_ms);
    let segment = Segment::from_packets(
        source.sequence,
        source.start_ms,
        source.duration_ms,
        source.discontinuity,
        packets,
    );
    if segment.video_config.is_none() {
        return Err(RenditionError::NoVideo(name.to_owned()));
    }
    Ok(segment)
}

/// When the first video picture is presented.
fn first_picture(packets: &[Packet]) -> Option<i64> {
    packets
        .iter()
        .filter(|p| p.track == Track::Video && p.kind == PacketKind::Frame)
        .map(|p| p.pts_ms)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use studio_media_core::transcode::{FrameRate, RenditionProfile};

    fn rendition(profile: H264Profile, gop: Gop, fps: Option<FrameRate>) -> Rendition {
        Rendition {
            profile: RenditionProfile {
                name: "240p0".into(),
                width: 426,
                height: 240,
                bitrate: 600_000,
                fps,
                gop,
                profile,
                quality: None,
            },
            width: 426,
            height: 240,
            level: 21,
        }
    }

    #[test]
    fn profiles_carry_every_setting() {
        let p = video_profile(&rendition(
            H264Profile::Main,
            Gop::Seconds(2.0),
            Some(FrameRate {
                num: 30000,
                den: 1001,
            }),
        ));
        assert_eq!((p.width, p.height, p.bitrate), (426, 240, 600_000));
        assert_eq!((p.fps, p.fps_den, p.gop), (30000, 1001, 2000));
        assert_eq!(p.profile, video_profile::Profile::H264Main as i32);
        let p = video_profile(&rendition(H264Profile::High, Gop::Intra, None));
        assert_eq!((p.fps, p.fps_den, p.gop), (0, 0, -1));
        let p = video_profile(&rendition(
            H264Profile::High,
            Gop::Segment,
            Some(FrameRate { num: 30, den: 1 }),
        ));
        assert_eq!((p.fps, p.fps_den, p.gop), (30, 0, 0));
    }

    #[test]
    fn simple_profiles_go_in_full_profiles() {
        let mut simple = video_profile(&rendition(H264Profile::High, Gop::Segment, None));
        simple.profile = 0;
        let token = proto::AuthToken::default();
        let r = SegmentRequest::new(
            &Identity::OffChain,
            "m",
            3,
            2000,
            Bytes::from_static(b"x"),
            vec![simple.clone()],
            token.clone(),
        )
        .unwrap();
        assert_eq!(r.seg_data.full_profiles, [simple]);
        assert!(r.seg_data.full_profiles3.is_empty());
        assert!(
            r.seg_data.sig.is_empty(),
            "off-chain segments are not signed"
        );
        assert_eq!(r.seg_data.profiles, b"invalid");
        assert_eq!(r.hash(), keccak256(b"x"));
        let high = video_profile(&rendition(H264Profile::High, Gop::Segment, None));
        let r = SegmentRequest::new(
            &Identity::OffChain,
            "m",
            3,
            2000,
            Bytes::from_static(b"x"),
            vec![high],
            token,
        )
        .unwrap();
        assert!(r.seg_data.full_profiles.is_empty());
        assert_eq!(r.seg_data.full_profiles3.len(), 1);
        // AuthToken, H264, MPEGTS and the High profile bit.
        assert_eq!(r.seg_data.capabilities.unwrap().bitstring, [0x1203]);
    }
}
