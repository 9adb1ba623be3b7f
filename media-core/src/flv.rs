//! FLV tag bodies (what RTMP video and audio messages carry) to [`Packet`]s.
//!
//! Only H.264 video and AAC audio are accepted: they are what the rest of the pipeline (HLS,
//! WebRTC forwarding, the transcoders) handles, and what OBS and ffmpeg send by default. Any
//! other codec is an error, and the ingest server disconnects the encoder with it so the user
//! sees why instead of a stream that never plays.

use bytes::Bytes;

use crate::packet::{Packet, PacketKind, Track};

/// FLV `CodecID` of AVC (H.264).
const CODEC_ID_AVC: u8 = 7;
/// FLV `SoundFormat` of AAC.
const SOUND_FORMAT_AAC: u8 = 10;
/// Bytes before the payload of an AVC video tag: flags, AVCPacketType, 24-bit CompositionTime.
const AVC_TAG_HEADER_LEN: usize = 5;
/// Bytes before the payload of an AAC audio tag: flags, AACPacketType.
const AAC_TAG_HEADER_LEN: usize = 2;

/// Why an FLV tag body could not be turned into a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    /// The video tag carries a codec other than H.264 (FLV codec id 7).
    #[error("unsupported video codec {name} (FLV codec id {codec_id}); only H.264 is accepted")]
    UnsupportedVideoCodec {
        /// The FLV `CodecID`.
        codec_id: u8,
        /// A human name for it.
        name: &'static str,
    },
    /// The video tag uses the enhanced-RTMP extended header (HEVC, AV1, VP9 by FourCC).
    #[error("unsupported enhanced-RTMP video codec {fourcc:?}; only H.264 is accepted")]
    UnsupportedEnhancedVideo {
        /// The FourCC as text (lossy), e.g. `hvc1`.
        fourcc: String,
    },
    /// The audio tag carries a codec other than AAC (FLV sound format 10).
    #[error(
        "unsupported audio codec {name} (FLV sound format {sound_format}); only AAC is accepted"
    )]
    UnsupportedAudioCodec {
        /// The FLV `SoundFormat`.
        sound_format: u8,
        /// A human name for it.
        name: &'static str,
    },
    /// The tag body is shorter than its fixed header.
    #[error("{track:?} tag of {len} bytes is shorter than its {min}-byte header")]
    Truncated {
        /// Which kind of tag.
        track: Track,
        /// Bytes received.
        len: usize,
        /// Bytes the header needs.
        min: usize,
    },
    /// A file does not start with the FLV signature.
    #[error("not an FLV file")]
    NotAnFlvFile,
    /// The H.264 sequence header is not a valid AVCDecoderConfigurationRecord.
    #[error("invalid AVCDecoderConfigurationRecord: {0}")]
    InvalidAvcConfig(&'static str),
    /// The AAC sequence header is not a valid AudioSpecificConfig.
    #[error("invalid AAC AudioSpecificConfig: {0}")]
    InvalidAudioConfig(&'static str),
}

/// The fields of an AVCDecoderConfigurationRecord (ISO/IEC 14496-15) that later stages need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication` (66 baseline, 77 main, 100 high).
    pub profile: u8,
    /// `AVCLevelIndication` times ten (31 is level 3.1).
    pub level: u8,
    /// Bytes in each NAL unit length prefix of the frames (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence parameter sets.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets.
    pub pps: Vec<Bytes>,
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord.
    pub fn parse(record: &Bytes) -> Result<Self, FlvError> {
        let b = record.as_ref();
        if b.len() < 7 {
            return Err(FlvError::InvalidAvcConfig("shorter than 7 bytes"));
        }
        if b[0] != 1 {
            return Err(FlvError::InvalidAvcConfig("configurationVersion is not 1"));
        }
        let nal_length_size = (b[4] & 0x03) + 1;
        if nal_length_size == 3 {
            // 14496-15 allows only 1, 2 and 4.
            return Err(FlvError::InvalidAvcConfig("NAL length size of 3 bytes"));
        }
        let mut pos = 5;
        let sps_count = usize::from(b[pos] & 0x1f);
        pos += 1;
        let sps = read_parameter_sets(record, &mut pos, sps_count)?;
        let Some(&pps_count) = b.get(pos) else {
            return Err(FlvError::InvalidAvcConfig("missing PPS count"));
        };
        pos += 1;
        let pps = read_parameter_sets(record, &mut pos, usize::from(pps_count))?;
        if sps.is_empty() || pps.is_empty() {
            return Err(FlvError::InvalidAvcConfig("no SPS or no PPS"));
        }
        Ok(Self {
            profile: b[1],
            level: b[3],
            nal_length_size,
            sps,
            pps,
        })
    }
}

fn read_parameter_sets(
    record: &Bytes,
    pos: &mut usize,
    count: usize,
) -> Result<Vec<Bytes>, FlvError> {
    let mut sets = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(len) = record.get(*pos..*pos + 2) else {
            return Err(FlvError::InvalidAvcConfig("truncated parameter set length"));
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        *pos += 2;
        if *pos + len > record.len() {
            return Err(FlvError::InvalidAvcConfig(
                "parameter set runs past the record",
            ));
        }
        sets.push(record.slice(*pos..*pos + len));
        *pos += len;
    }
    Ok(sets)
}

/// The fields of an AAC AudioSpecificConfig (ISO/IEC 14496-3) that later stages need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// Audio object type (2 is AAC-LC).
    pub object_type: u8,
    /// Sampling rate in Hz.
    pub sample_rate: u32,
    /// Channel configuration (1 mono, 2 stereo, 0 means defined in-band).
    pub channels: u8,
}

/// Sampling frequencies by their AudioSpecificConfig (and ADTS) index.
pub(crate) const AAC_SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

impl AacConfig {
    /// Parses the leading fields of an AudioSpecificConfig.
    pub fn parse(config: &[u8]) -> Result<Self, FlvError> {
        let mut bits = BitReader {
            data: config,
            pos: 0,
        };
        let too_short = FlvError::InvalidAudioConfig("too short");
        let mut object_type = bits.read(5).ok_or(too_short.clone())?;
        if object_type == 31 {
            object_type = 32 + bits.read(6).ok_or(too_short.clone())?;
        }
        if object_type == 0 {
            return Err(FlvError::InvalidAudioConfig("audio object type 0"));
        }
        let index = bits.read(4).ok_or(too_short.clone())?;
        let sample_rate = match index {
            15 => bits.read(24).ok_or(too_short.clone())?,
            i => *AAC_SAMPLE_RATES
                .get(i as usize)
                .ok_or(FlvError::InvalidAudioConfig(
                    "reserved sampling frequency index",
                ))?,
        };
        let channels = bits.read(4).ok_or(too_short)?;
        Ok(Self {
            object_type: object_type as u8,
            sample_rate,
            channels: channels as u8,
        })
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Some(v)
    }
}

/// Turns the FLV tag bodies of one published stream into packets.
///
/// Stateful because RTMP timestamps are 32-bit milliseconds that wrap after ~49.7 days, and
/// because frames are only useful once the track's sequence header has been seen.
#[derive(Debug, Default)]
pub struct FlvDemuxer {
    clock: TimestampUnwrapper,
    video_config: Option<AvcConfig>,
    audio_config: Option<AacConfig>,
}

impl FlvDemuxer {
    /// A demuxer for a new stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last H.264 sequence header seen.
    pub fn video_config(&self) -> Option<&AvcConfig> {
        self.video_config.as_ref()
    }

    /// The last AAC sequence header seen.
    pub fn audio_config(&self) -> Option<&AacConfig> {
        self.audio_config.as_ref()
    }

    /// Demuxes a video tag body. `Ok(None)` for tags that carry no media: command frames, the
    /// end-of-sequence marker, and frames sent before any sequence header (a decoder could not
    /// use them, and dropping them is kinder to sloppy encoders than disconnecting).
    pub fn video(&mut self, timestamp: u32, body: Bytes) -> Result<Option<Packet>, FlvError> {
        let Some(&flags) = body.first() else {
            return Ok(None);
        };
        if flags & 0x80 != 0 {
            let fourcc = body
                .get(1..5)
                .map(|f| String::from_utf8_lossy(f).into_owned());
            return Err(FlvError::UnsupportedEnhancedVideo {
                fourcc: fourcc.unwrap_or_default(),
            });
        }
        let frame_type = flags >> 4;
        let codec_id = flags & 0x0f;
        if codec_id != CODEC_ID_AVC {
            return Err(FlvError::UnsupportedVideoCodec {
                codec_id,
                name: video_codec_name(codec_id),
            });
        }
        // Frame type 5 is a video info/command frame: no picture in it.
        if frame_type == 5 {
            return Ok(None);
        }
        if body.len() < AVC_TAG_HEADER_LEN {
            return Err(FlvError::Truncated {
                track: Track::Video,
                len: body.len(),
                min: AVC_TAG_HEADER_LEN,
            });
        }
        let dts = self.clock.extend(timestamp);
        // CompositionTime is a signed 24-bit big-endian offset.
        let cts = (i32::from_be_bytes([body[2], body[3], body[4], 0]) >> 8) as i64;
        let data = body.slice(AVC_TAG_HEADER_LEN..);
        match body[1] {
            0 => {
                self.video_config = Some(AvcConfig::parse(&data)?);
                Ok(Some(Packet {
                    track: Track::Video,
                    kind: PacketKind::Config,
                    dts_ms: dts,
                    pts_ms: dts,
                    keyframe: false,
                    data,
                }))
            }
            1 if self.video_config.is_some() && !data.is_empty() => Ok(Some(Packet {
                track: Track::Video,
                kind: PacketKind::Frame,
                dts_ms: dts,
                pts_ms: dts + cts,
                // 4 is a server-generated keyframe; both start a GOP.
                keyframe: frame_type == 1 || frame_type == 4,
                data,
            })),
            // 2 is end of sequence; anything else is undefined and carries nothing we can use.
            _ => Ok(None),
        }
    }

    /// Demuxes an audio tag body. `Ok(None)` for frames sent before the sequence header.
    pub fn audio(&mut self, timestamp: u32, body: Bytes) -> Result<Option<Packet>, FlvError> {
        let Some(&flags) = body.first() else {
            return Ok(None);
        };
        let sound_format = flags >> 4;
        if sound_format != SOUND_FORMAT_AAC {
            return Err(FlvError::UnsupportedAudioCodec {
                sound_format,
                name: audio_codec_name(sound_format),
            });
        }
        if body.len() < AAC_TAG_HEADER_LEN {
            return Err(FlvError::Truncated {
                track: Track::Audio,
                len: body.len(),
                min: AAC_TAG_HEADER_LEN,
            });
        }
        let dts = self.clock.extend(timestamp);
        let data = body.slice(AAC_TAG_HEADER_LEN..);
        let kind = match body[1] {
            0 => {
                self.audio_config = Some(AacConfig::parse(&data)?);
                PacketKind::Config
            }
            1 if self.audio_config.is_some() && !data.is_empty() => PacketKind::Frame,
            _ => return Ok(None),
        };
        Ok(Some(Packet {
            track: Track::Audio,
            kind,
            dts_ms: dts,
            pts_ms: dts,
            keyframe: false,
            data,
        }))
    }
}

/// Widens 32-bit RTMP timestamps to `i64` across wraparound.
#[derive(Debug, Default)]
struct TimestampUnwrapper {
    last: Option<u32>,
    epoch: i64,
}

impl TimestampUnwrapper {
    fn extend(&mut self, ts: u32) -> i64 {
        if let Some(last) = self.last {
            // A drop of more than half the range is a wrap, not a reordering: audio and video
            // interleave with small backward steps that must stay backward.
            if ts < last && last - ts > u32::MAX / 2 {
                self.epoch += 1 << 32;
            } else if ts > last && ts - last > u32::MAX / 2 {
                // A straggler from just before the wrap, interleaved after it.
                return self.epoch - (1 << 32) + i64::from(ts);
            }
        }
        self.last = Some(ts);
        self.epoch + i64::from(ts)
    }
}

/// Demuxes a whole FLV file (an `.flv` recording, or what `ffmpeg -f flv` writes) into packets,
/// with the same rules as live RTMP ingest. Script tags are skipped; a file cut short ends at
/// its last complete tag.
pub fn demux_file(file: &Bytes) -> Result<Vec<Packet>, FlvError> {
    const FILE_HEADER_LEN: usize = 9;
    const TAG_HEADER_LEN: usize = 11;
    if file.len() < FILE_HEADER_LEN || &file[..3] != b"FLV" {
        return Err(FlvError::NotAnFlvFile);
    }
    let header_len = u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize;
    // The header, then the 4-byte PreviousTagSize0.
    let mut pos = header_len.max(FILE_HEADER_LEN) + 4;
    let mut demuxer = FlvDemuxer::new();
    let mut packets = Vec::new();
    while let Some(header) = file.get(pos..pos + TAG_HEADER_LEN) {
        let size =
            (usize::from(header[1]) << 16) | (usize::from(header[2]) << 8) | usize::from(header[3]);
        let timestamp = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
        let body_start = pos + TAG_HEADER_LEN;
        if body_start + size > file.len() {
            break;
        }
        let body = file.slice(body_start..body_start + size);
        let packet = match header[0] & 0x1f {
            8 => demuxer.audio(timestamp, body)?,
            9 => demuxer.video(timestamp, body)?,
            _ => None,
        };
        packets.extend(packet);
        pos = body_start + size + 4;
    }
    Ok(packets)
}

fn video_codec_name(codec_id: u8) -> &'static str {
    match codec_id {
        1 => "JPEG",
        2 => "Sorenson H.263",
        3 => "Screen video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "Screen video v2",
        12 => "HEVC (non-standard FLV)",
        13 => "AV1 (non-standard FLV)",
        _ => "unknown",
    }
}

fn audio_codec_name(sound_format: u8) -> &'static str {
    match sound_format {
        0 | 3 => "linear PCM",
        1 => "ADPCM",
        2 => "MP3",
        4..=6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        9 => "enhanced-RTMP audio",
        11 => "Speex",
        14 => "MP3 8 kHz",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal but well-formed AVCDecoderConfigurationRecord: High profile, level 3.0,
    /// 4-byte NAL lengths, one SPS and one PPS.
    fn avc_record() -> Vec<u8> {
        let mut r = vec![1, 100, 0, 30, 0xff, 0xe1];
        r.extend_from_slice(&[0, 4, 0x67, 100, 0, 30]);
        r.push(1);
        r.extend_from_slice(&[0, 2, 0x68, 0xce]);
        r
    }

    fn video_tag(frame_type: u8, packet_type: u8, cts: i32, payload: &[u8]) -> Bytes {
        let c = cts.to_be_bytes();
        let mut b = vec![
            (frame_type << 4) | CODEC_ID_AVC,
            packet_type,
            c[1],
            c[2],
            c[3],
        ];
        b.extend_from_slice(payload);
        Bytes::from(b)
    }

    #[test]
    fn h264_sequence_header_and_frames() {
        let mut d = FlvDemuxer::new();
        let cfg = d
            .video(0, video_tag(1, 0, 0, &avc_record()))
            .unwrap()
            .unwrap();
        assert_eq!(cfg.kind, PacketKind::Config);
        let parsed = d.video_config().unwrap();
        assert_eq!(
            (parsed.profile, parsed.level, parsed.nal_length_size),
            (100, 30, 4)
        );
        assert_eq!(parsed.sps.len(), 1);
        assert_eq!(parsed.pps[0].as_ref(), &[0x68, 0xce]);

        let key = d
            .video(40, video_tag(1, 1, 80, &[0, 0, 0, 1, 0x65]))
            .unwrap()
            .unwrap();
        assert!(key.is_video_keyframe());
        assert_eq!((key.dts_ms, key.pts_ms), (40, 120));
        assert_eq!(key.data.as_ref(), &[0, 0, 0, 1, 0x65]);

        // Negative composition offsets exist (B-frame reordering with edit lists).
        let inter = d
            .video(80, video_tag(2, 1, -40, &[0, 0, 0, 1, 0x41]))
            .unwrap()
            .unwrap();
        assert!(!inter.keyframe);
        assert_eq!(inter.pts_ms, 40);

        // End of sequence and command frames carry nothing.
        assert_eq!(d.video(90, video_tag(1, 2, 0, &[])).unwrap(), None);
        assert_eq!(d.video(90, Bytes::from_static(&[0x57, 0])).unwrap(), None);
    }

    #[test]
    fn frames_before_the_sequence_header_are_dropped() {
        let mut d = FlvDemuxer::new();
        assert_eq!(
            d.video(0, video_tag(1, 1, 0, &[0, 0, 0, 1, 0x65])).unwrap(),
            None
        );
        assert_eq!(
            d.audio(0, Bytes::from_static(&[0xaf, 1, 0x21])).unwrap(),
            None
        );
    }

    #[test]
    fn aac_sequence_header_and_frames() {
        let mut d = FlvDemuxer::new();
        // AAC-LC, 44.1 kHz, stereo: 00010 0100 0010 000
        let cfg = d
            .audio(0, Bytes::from_static(&[0xaf, 0, 0x12, 0x10]))
            .unwrap()
            .unwrap();
        assert_eq!(cfg.kind, PacketKind::Config);
        assert_eq!(
            d.audio_config(),
            Some(&AacConfig {
                object_type: 2,
                sample_rate: 44100,
                channels: 2
            })
        );
        let frame = d
            .audio(23, Bytes::from_static(&[0xaf, 1, 0x21, 0x00]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (frame.track, frame.kind, frame.dts_ms, frame.pts_ms),
            (Track::Audio, PacketKind::Frame, 23, 23)
        );
        assert_eq!(frame.data.as_ref(), &[0x21, 0x00]);
    }

    #[test]
    fn other_codecs_are_rejected_by_name() {
        let mut d = FlvDemuxer::new();
        let err = d
            .video(0, Bytes::from_static(&[0x12, 0, 0, 0, 0]))
            .unwrap_err();
        assert_eq!(
            err,
            FlvError::UnsupportedVideoCodec {
                codec_id: 2,
                name: "Sorenson H.263"
            }
        );
        let err = d
            .video(0, Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1']))
            .unwrap_err();
        assert_eq!(
            err,
            FlvError::UnsupportedEnhancedVideo {
                fourcc: "hvc1".into()
            }
        );
        let err = d.audio(0, Bytes::from_static(&[0x2f, 0xff])).unwrap_err();
        assert_eq!(
            err,
            FlvError::UnsupportedAudioCodec {
                sound_format: 2,
                name: "MP3"
            }
        );
        assert!(err.to_string().contains("only AAC"));
    }

    #[test]
    fn malformed_headers_are_errors() {
        let mut d = FlvDemuxer::new();
        assert!(matches!(
            d.video(0, Bytes::from_static(&[0x17, 0])),
            Err(FlvError::Truncated { .. })
        ));
        assert!(matches!(
            d.audio(0, Bytes::from_static(&[0xaf])),
            Err(FlvError::Truncated { .. })
        ));
        let mut bad = avc_record();
        bad.truncate(9);
        assert!(matches!(
            d.video(0, video_tag(1, 0, 0, &bad)),
            Err(FlvError::InvalidAvcConfig(_))
        ));
        assert!(matches!(
            d.audio(0, Bytes::from_static(&[0xaf, 0, 0x12])),
            Err(FlvError::InvalidAudioConfig(_))
        ));
    }

    #[test]
    fn timestamps_survive_the_32_bit_wrap() {
        let mut c = TimestampUnwrapper::default();
        assert_eq!(c.extend(u32::MAX - 10), i64::from(u32::MAX) - 10);
        // Small backward steps (audio/video interleave) stay backward.
        assert_eq!(c.extend(u32::MAX - 20), i64::from(u32::MAX) - 20);
        assert_eq!(c.extend(5), (1i64 << 32) + 5);
        assert_eq!(c.extend(u32::MAX - 1), i64::from(u32::MAX) - 1);
        assert_eq!(c.extend(9), (1i64 << 32) + 9);
    }
}
