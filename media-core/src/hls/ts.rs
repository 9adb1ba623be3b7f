//! MPEG-TS (ISO/IEC 13818-1) muxing of one [`Segment`] into one HLS media segment.
//!
//! Every segment starts with a PAT and a PMT so a player can begin at any segment, and the
//! muxer keeps continuity counters and the timestamp origin from one segment to the next so
//! that a player walking the playlist sees one unbroken transport stream.

use bytes::{BufMut, Bytes, BytesMut};

use crate::flv::{AAC_SAMPLE_RATES, AacConfig, AvcConfig, FlvError};
use crate::packet::{Packet, PacketKind, Track};
use crate::segment::Segment;

/// Size of every transport stream packet.
pub const TS_PACKET_SIZE: usize = 188;
/// PID of the program map table.
pub const PMT_PID: u16 = 0x1000;
/// PID of the H.264 elementary stream.
pub const VIDEO_PID: u16 = 0x100;
/// PID of the AAC elementary stream.
pub const AUDIO_PID: u16 = 0x101;
/// Largest PES accepted: far above any sane frame, low enough that a corrupt length can't make
/// the muxer allocate without bound.
pub const MAX_PES_BYTES: usize = 8 * 1024 * 1024;

const PAT_PID: u16 = 0;
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_ADTS_AAC: u8 = 0x0f;
const STREAM_ID_VIDEO: u8 = 0xe0;
const STREAM_ID_AUDIO: u8 = 0xc0;
/// Where the first segment starts on the 90 kHz clock. Leaves room below it for packets
/// timestamped slightly before the first segment's start, which would otherwise wrap.
const ORIGIN_90K: i64 = 10 * 90_000;
/// Time after which a PES on the other PID gets a PCR-only packet before it (50 ms on the
/// 90 kHz clock): half of the 100 ms that ISO/IEC 13818-1 allows between PCRs, leaving room
/// for one more frame before the next PCR-carrying one.
const PCR_FILL_90K: i64 = 4_500;
/// PTS and DTS are 33-bit fields.
const TIMESTAMP_MASK: i64 = (1 << 33) - 1;
/// ADTS header length without CRC.
const ADTS_HEADER_LEN: usize = 7;
/// ADTS `frame_length` is 13 bits and includes the header.
const MAX_ADTS_FRAME: usize = (1 << 13) - 1;
/// Access unit delimiter NAL with `primary_pic_type` 7 (any slice type); Apple's HLS
/// authoring spec asks for one at the start of each access unit.
const ACCESS_UNIT_DELIMITER: [u8; 2] = [0x09, 0xf0];
const START_CODE: [u8; 4] = [0, 0, 0, 1];
const NAL_TYPE_SPS: u8 = 7;
const NAL_TYPE_PPS: u8 = 8;
const NAL_TYPE_AUD: u8 = 9;

/// Why a segment could not be muxed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    /// The segment holds no frames, so there is nothing to play.
    #[error("segment {sequence} holds no frames")]
    EmptySegment {
        /// The segment's sequence number.
        sequence: u64,
    },
    /// The segment has frames of a track but not the configuration that decodes them.
    #[error("segment has {track:?} frames but no {track:?} decoder configuration")]
    MissingConfig {
        /// The track without configuration.
        track: Track,
    },
    /// The segment's decoder configuration does not parse.
    #[error(transparent)]
    InvalidConfig(#[from] FlvError),
    /// A NAL unit length prefix runs past the end of the frame.
    #[error("NAL unit of {len} bytes at offset {offset} runs past the {frame_len}-byte frame")]
    TruncatedNal {
        /// Offset of the length prefix in the frame.
        offset: usize,
        /// The length the prefix claims.
        len: usize,
        /// Size of the whole frame.
        frame_len: usize,
    },
    /// One frame would make a PES larger than [`MAX_PES_BYTES`].
    #[error("PES of {size} bytes exceeds the {limit}-byte limit")]
    PesTooLarge {
        /// The PES size.
        size: usize,
        /// [`MAX_PES_BYTES`].
        limit: usize,
    },
    /// An AAC frame too large for the 13-bit ADTS frame length.
    #[error("AAC frame of {len} bytes does not fit an ADTS header (max {max} bytes)")]
    AdtsFrameTooLarge {
        /// The raw frame size.
        len: usize,
        /// The largest raw frame ADTS can carry.
        max: usize,
    },
    /// ADTS can carry only AAC Main, LC, SSR and LTP (object types 1 to 4).
    #[error("AAC object type {0} cannot be carried in ADTS")]
    UnsupportedAacObjectType(u8),
    /// ADTS has a 4-bit sampling frequency index and no escape for other rates.
    #[error("AAC sample rate {0} Hz cannot be carried in ADTS")]
    UnsupportedSampleRate(u32),
    /// ADTS has a 3-bit channel configuration; 0 (layout in a PCE) is not supported.
    #[error("AAC channel configuration {0} cannot be carried in ADTS")]
    UnsupportedChannels(u8),
}

/// Turns segments into MPEG-TS. Use one muxer per rendition, for the whole stream, and feed
/// it the segments in order.
#[derive(Debug, Default)]
pub struct TsMuxer {
    /// Continuity counters (4 bits) of PAT, PMT, video and audio.
    cc: [u8; 4],
    /// Milliseconds that map to [`ORIGIN_90K`]: the first segment's earliest timestamp.
    origin_ms: Option<i64>,
    /// The PMT's track set and version; the version changes when the track set does.
    pmt: Option<(bool, bool, u8)>,
}

impl TsMuxer {
    /// A muxer for a new stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Muxes one segment into a self-contained MPEG-TS file: PAT and PMT, then one PES per
    /// frame in the segment's order. The first segment's earliest timestamp becomes 10 s on
    /// the 90 kHz clock and later segments follow on the same timeline, with continuity
    /// counters carried over, so consecutive segments join into one valid stream.
    pub fn mux(&mut self, segment: &Segment) -> Result<Bytes, TsError> {
        let frames = || {
            segment
                .packets
                .iter()
                .filter(|p| p.kind == PacketKind::Frame)
        };
        let has_video = frames().any(|p| p.track == Track::Video);
        let has_audio = frames().any(|p| p.track == Track::Audio);
        if !has_video && !has_audio {
            return Err(TsError::EmptySegment {
                sequence: segment.sequence,
            });
        }
        let video = if has_video {
            let record = segment
                .video_config
                .as_ref()
                .ok_or(TsError::MissingConfig {
                    track: Track::Video,
                })?;
            Some(AvcConfig::parse(record)?)
        } else {
            None
        };
        let audio = if has_audio {
            let asc = segment
                .audio_config
                .as_ref()
                .ok_or(TsError::MissingConfig {
                    track: Track::Audio,
                })?;
            Some(AdtsParams::new(&AacConfig::parse(asc)?)?)
        } else {
            None
        };

        let origin = *self.origin_ms.get_or_insert_with(|| {
            frames()
                .map(|p| p.dts_ms.min(p.pts_ms))
                .min()
                .unwrap_or(segment.start_ms)
        });
        // Unwrapped here so comparisons hold across the 33-bit wrap (after 26.5 hours); the
        // writers keep the low 33 bits.
        let to_90k = |ms: i64| (ms - origin) * 90 + ORIGIN_90K;
        let pcr_pid = if has_video { VIDEO_PID } else { AUDIO_PID };

        let mut out = BytesMut::with_capacity(segment.size_bytes as usize * 11 / 10 + 4096);
        self.write_pat(&mut out);
        self.write_pmt(&mut out, has_video, has_audio);

        let mut last_pcr: Option<i64> = None;
        for packet in frames() {
            let dts = to_90k(packet.dts_ms);
            // A B-frame's pts is never before its dts in a valid stream; clamp rather than
            // write a PES that players reject.
            let pts = to_90k(packet.pts_ms.max(packet.dts_ms));
            let (pid, stream_id, payload) = match packet.track {
                Track::Video => {
                    let config = video.as_ref().expect("has_video");
                    (VIDEO_PID, STREAM_ID_VIDEO, annex_b(packet, config)?)
                }
                Track::Audio => {
                    let params = audio.as_ref().expect("has_audio");
                    (AUDIO_PID, STREAM_ID_AUDIO, params.wrap(&packet.data)?)
                }
            };
            // Every PES on the PCR PID carries a PCR (8 bytes a frame, and the interval is then
            // the frame interval). If frames of the other track alone span a while (a low
            // video frame rate), an adaptation-field-only packet keeps the PCR under 100 ms.
            // It never goes backwards: audio interleaved just behind video is skipped.
            let mut pcr = None;
            if last_pcr.is_none_or(|last| dts >= last) {
                if pid == pcr_pid {
                    pcr = Some(dts);
                    last_pcr = pcr;
                } else if last_pcr.is_none_or(|last| dts >= last + PCR_FILL_90K) {
                    self.write_pcr_only(&mut out, pcr_pid, dts);
                    last_pcr = Some(dts);
                }
            }
            let pes = pes(stream_id, pts, dts, &payload, packet.track == Track::Video)?;
            // Every AAC frame decodes on its own, so audio-only segments can start anywhere.
            let random_access = packet.is_video_keyframe() || !has_video;
            self.write_pes(&mut out, pid, &pes, pcr, random_access);
        }
        Ok(out.freeze())
    }

    fn next_cc(&mut self, pid: u16) -> u8 {
        let slot = match pid {
            PAT_PID => 0,
            PMT_PID => 1,
            VIDEO_PID => 2,
            _ => 3,
        };
        let cc = self.cc[slot];
        self.cc[slot] = (cc + 1) & 0x0f;
        cc
    }

    fn write_pat(&mut self, out: &mut BytesMut) {
        let mut section = Vec::with_capacity(16);
        section.extend_from_slice(&[0x00, 0x01]); // transport_stream_id
        section.extend_from_slice(&[0xc1, 0x00, 0x00]); // version 0, current, section 0 of 0
        section.extend_from_slice(&[0x00, 0x01]); // program_number 1
        section.extend_from_slice(&(0xe000 | PMT_PID).to_be_bytes());
        self.write_psi(out, PAT_PID, 0x00, &section);
    }

    fn write_pmt(&mut self, out: &mut BytesMut, has_video: bool, has_audio: bool) {
        let version = match self.pmt {
            Some((v, a, version)) if (v, a) == (has_video, has_audio) => version,
            Some((_, _, version)) => (version + 1) & 0x1f,
            None => 0,
        };
        self.pmt = Some((has_video, has_audio, version));
        let pcr_pid = if has_video { VIDEO_PID } else { AUDIO_PID };
        let mut section = Vec::with_capacity(32);
        section.extend_from_slice(&[0x00, 0x01]); // program_number 1
        section.extend_from_slice(&[0xc1 | (version << 1), 0x00, 0x00]);
        section.extend_from_slice(&(0xe000 | pcr_pid).to_be_bytes());
        section.extend_from_slice(&[0xf0, 0x00]); // no program descriptors
        for (present, stream_type, pid) in [
            (has_video, STREAM_TYPE_H264, VIDEO_PID),
            (has_audio, STREAM_TYPE_ADTS_AAC, AUDIO_PID),
        ] {
            if present {
                section.push(stream_type);
                section.extend_from_slice(&(0xe000 | pid).to_be_bytes());
                section.extend_from_slice(&[0xf0, 0x00]); // no ES descriptors
            }
        }
        self.write_psi(out, PMT_PID, 0x02, &section);
    }

    /// Writes one PSI section (after its 3-byte header) in a single TS packet.
    fn write_psi(&mut self, out: &mut BytesMut, pid: u16, table_id: u8, body: &[u8]) {
        let cc = self.next_cc(pid);
        let start = out.len();
        put_header(out, pid, true, 0b01, cc);
        out.put_u8(0); // pointer_field
        let section_start = out.len();
        out.put_u8(table_id);
        // section_syntax_indicator, '0', reserved, then the length after this field
        // (body plus CRC).
        out.put_u16(0xb000 | (body.len() as u16 + 4));
        out.put_slice(body);
        let crc = crc32_mpeg2(&out[section_start..]);
        out.put_u32(crc);
        out.resize(start + TS_PACKET_SIZE, 0xff);
    }

    /// Writes an adaptation-field-only packet carrying a PCR. Such packets carry no payload,
    /// so the continuity counter stays as it is.
    fn write_pcr_only(&mut self, out: &mut BytesMut, pid: u16, pcr: i64) {
        let slot = if pid == VIDEO_PID { 2 } else { 3 };
        // With no payload, the counter repeats the previous packet's value.
        let cc = self.cc[slot].wrapping_sub(1) & 0x0f;
        let start = out.len();
        put_header(out, pid, false, 0b10, cc);
        out.put_u8(183);
        out.put_u8(0x10);
        put_pcr(out, pcr);
        out.resize(start + TS_PACKET_SIZE, 0xff);
    }

    fn write_pes(
        &mut self,
        out: &mut BytesMut,
        pid: u16,
        pes: &[u8],
        pcr: Option<i64>,
        random_access: bool,
    ) {
        let mut rest = pes;
        let mut first = true;
        while !rest.is_empty() {
            // Adaptation field contents after its length byte.
            let mut af: Vec<u8> = Vec::new();
            if first && (pcr.is_some() || random_access) {
                af.push(
                    if random_access { 0x40 } else { 0 } | if pcr.is_some() { 0x10 } else { 0 },
                );
                if let Some(pcr) = pcr {
                    let mut b = BytesMut::new();
                    put_pcr(&mut b, pcr);
                    af.extend_from_slice(&b);
                }
            }
            let room = TS_PACKET_SIZE - 4 - if af.is_empty() { 0 } else { 1 + af.len() };
            let take = rest.len().min(room);
            if take < room {
                // The last packet of the PES: stuff the adaptation field so the packet is
                // full. A single spare byte is an adaptation field of length 0.
                let field_len = TS_PACKET_SIZE - 4 - take;
                if af.is_empty() && field_len >= 2 {
                    af.push(0x00);
                }
                af.resize(field_len.saturating_sub(1).max(af.len()), 0xff);
            }
            let has_af = !af.is_empty() || take < room;
            let cc = self.next_cc(pid);
            put_header(out, pid, first, if has_af { 0b11 } else { 0b01 }, cc);
            if has_af {
                out.put_u8(af.len() as u8);
                out.put_slice(&af);
            }
            out.put_slice(&rest[..take]);
            rest = &rest[take..];
            first = false;
        }
    }
}

fn put_header(out: &mut BytesMut, pid: u16, unit_start: bool, afc: u8, cc: u8) {
    out.put_u8(0x47);
    out.put_u16(if unit_start { 0x4000 } else { 0 } | (pid & 0x1fff));
    out.put_u8((afc << 4) | (cc & 0x0f));
}

fn put_pcr(out: &mut BytesMut, pcr_90k: i64) {
    // 33-bit base, 6 reserved bits, 9-bit extension (0: the base is exact enough here).
    let base = (pcr_90k & TIMESTAMP_MASK) as u64;
    let v = (base << 15) | (0x3f << 9);
    out.put_slice(&v.to_be_bytes()[2..]);
}

/// Builds a PES packet. Video gets a DTS when it differs from the PTS; audio never needs one.
fn pes(stream_id: u8, pts: i64, dts: i64, payload: &[u8], video: bool) -> Result<Vec<u8>, TsError> {
    let with_dts = video && dts != pts;
    let header_data_len = if with_dts { 10 } else { 5 };
    let size = 9 + header_data_len + payload.len();
    if size > MAX_PES_BYTES {
        return Err(TsError::PesTooLarge {
            size,
            limit: MAX_PES_BYTES,
        });
    }
    let mut pes = Vec::with_capacity(size);
    pes.extend_from_slice(&[0, 0, 1, stream_id]);
    // PES_packet_length counts the bytes after it; 0 ("unbounded") is allowed for video only,
    // and needed when a large frame does not fit 16 bits.
    let length = size - 6;
    let length = if length > usize::from(u16::MAX) {
        0
    } else {
        length as u16
    };
    pes.extend_from_slice(&length.to_be_bytes());
    pes.push(0x80); // '10' marker, no scrambling, no priority, no alignment flags
    pes.push(if with_dts { 0xc0 } else { 0x80 });
    pes.push(header_data_len as u8);
    put_timestamp(&mut pes, if with_dts { 0b0011 } else { 0b0010 }, pts);
    if with_dts {
        put_timestamp(&mut pes, 0b0001, dts);
    }
    pes.extend_from_slice(payload);
    Ok(pes)
}

fn put_timestamp(out: &mut Vec<u8>, prefix: u8, ts: i64) {
    let ts = (ts & TIMESTAMP_MASK) as u64;
    out.push((prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1);
    out.extend_from_slice(&((((ts >> 15) & 0x7fff) << 1 | 1) as u16).to_be_bytes());
    out.extend_from_slice(&((((ts & 0x7fff) << 1) | 1) as u16).to_be_bytes());
}

/// Converts one AVCC access unit (length-prefixed NAL units) to Annex B, starting with an
/// access unit delimiter and, on keyframes, the SPS and PPS: each HLS segment must decode on
/// its own, and the AVCC stream keeps parameter sets out of band.
pub fn annex_b(packet: &Packet, config: &AvcConfig) -> Result<Vec<u8>, TsError> {
    let data = packet.data.as_ref();
    let prefix = usize::from(config.nal_length_size);
    let mut nals = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let Some(len_bytes) = data.get(pos..pos + prefix) else {
            return Err(TsError::TruncatedNal {
                offset: pos,
                len: prefix,
                frame_len: data.len(),
            });
        };
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let Some(nal) = data.get(pos + prefix..pos + prefix + len) else {
            return Err(TsError::TruncatedNal {
                offset: pos,
                len,
                frame_len: data.len(),
            });
        };
        pos += prefix + len;
        if !nal.is_empty() {
            nals.push(nal);
        }
    }

    let nal_type = |nal: &[u8]| nal[0] & 0x1f;
    let mut out = Vec::with_capacity(data.len() + 64);
    out.extend_from_slice(&START_CODE);
    out.extend_from_slice(&ACCESS_UNIT_DELIMITER);
    let in_band = nals
        .iter()
        .any(|n| matches!(nal_type(n), NAL_TYPE_SPS | NAL_TYPE_PPS));
    if packet.keyframe && !in_band {
        for set in config.sps.iter().chain(&config.pps) {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(set);
        }
    }
    for nal in nals {
        // Ours is the delimiter; a second one would start an empty access unit.
        if nal_type(nal) == NAL_TYPE_AUD {
            continue;
        }
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    if out.len() > MAX_PES_BYTES {
        return Err(TsError::PesTooLarge {
            size: out.len(),
            limit: MAX_PES_BYTES,
        });
    }
    Ok(out)
}

/// The fixed part of every ADTS header of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsParams {
    profile: u8,
    sampling_index: u8,
    channels: u8,
}

impl AdtsParams {
    /// Checks that the AudioSpecificConfig can be expressed in ADTS.
    pub fn new(config: &AacConfig) -> Result<Self, TsError> {
        if !(1..=4).contains(&config.object_type) {
            return Err(TsError::UnsupportedAacObjectType(config.object_type));
        }
        let sampling_index = AAC_SAMPLE_RATES
            .iter()
            .position(|&r| r == config.sample_rate)
            .ok_or(TsError::UnsupportedSampleRate(config.sample_rate))?;
        if !(1..=7).contains(&config.channels) {
            return Err(TsError::UnsupportedChannels(config.channels));
        }
        Ok(Self {
            profile: config.object_type - 1,
            sampling_index: sampling_index as u8,
            channels: config.channels,
        })
    }

    /// The 7-byte ADTS header (no CRC) for a raw frame of `raw_len` bytes.
    pub fn header(&self, raw_len: usize) -> Result<[u8; ADTS_HEADER_LEN], TsError> {
        let len = raw_len + ADTS_HEADER_LEN;
        if len > MAX_ADTS_FRAME {
            return Err(TsError::AdtsFrameTooLarge {
                len: raw_len,
                max: MAX_ADTS_FRAME - ADTS_HEADER_LEN,
            });
        }
        let len = len as u16;
        Ok([
            0xff,
            0xf1, // sync, MPEG-4, layer 0, no CRC
            (self.profile << 6) | (self.sampling_index << 2) | (self.channels >> 2),
            ((self.channels & 0x03) << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len & 0x07) as u8) << 5 | 0x1f, // buffer fullness 0x7ff: variable rate
            0xfc,                             // rest of the fullness, one raw data block
        ])
    }

    /// The raw frame with its ADTS header.
    pub fn wrap(&self, raw: &[u8]) -> Result<Vec<u8>, TsError> {
        let mut out = Vec::with_capacity(raw.len() + ADTS_HEADER_LEN);
        out.extend_from_slice(&self.header(raw.len())?);
        out.extend_from_slice(raw);
        Ok(out)
    }
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, not reflected, no final XOR), as PSI sections use.
pub(crate) fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0];
    const PPS: &[u8] = &[0x68, 0xef, 0x8f, 0xcb];

    fn avc_record() -> Bytes {
        let mut r = vec![1, 0x64, 0x00, 0x1e, 0xff, 0xe1];
        r.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        r.extend_from_slice(SPS);
        r.push(1);
        r.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        r.extend_from_slice(PPS);
        Bytes::from(r)
    }

    fn avcc(nals: &[&[u8]]) -> Bytes {
        let mut out = Vec::new();
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
        Bytes::from(out)
    }

    fn video(dts_ms: i64, keyframe: bool, size: usize) -> Packet {
        let mut nal = vec![if keyframe { 0x65 } else { 0x41 }];
        nal.resize(size, 0xab);
        Packet {
            track: Track::Video,
            kind: PacketKind::Frame,
            dts_ms,
            pts_ms: dts_ms + 66,
            keyframe,
            data: avcc(&[&nal]),
        }
    }

    fn audio(dts_ms: i64) -> Packet {
        Packet {
            track: Track::Audio,
            kind: PacketKind::Frame,
            dts_ms,
            pts_ms: dts_ms,
            keyframe: false,
            data: Bytes::from(vec![0x21; 300]),
        }
    }

    fn segment(sequence: u64, packets: Vec<Packet>) -> Segment {
        let has = |t| packets.iter().any(|p: &Packet| p.track == t);
        Segment {
            sequence,
            start_ms: packets[0].dts_ms,
            duration_ms: 1000,
            size_bytes: packets.iter().map(|p| p.data.len() as u64).sum(),
            discontinuity: false,
            video_config: has(Track::Video).then(avc_record),
            audio_config: has(Track::Audio).then(|| Bytes::from_static(&[0x12, 0x10])),
            packets,
        }
    }

    fn av_segment(sequence: u64, start_ms: i64) -> Segment {
        let mut packets = Vec::new();
        for i in 0..30 {
            packets.push(video(
                start_ms + i * 33,
                i == 0,
                if i == 0 { 5000 } else { 700 },
            ));
            packets.push(audio(start_ms + i * 33 + 5));
        }
        segment(sequence, packets)
    }

    /// (pid, unit start, cc, has payload, adaptation field bytes)
    fn packets(ts: &[u8]) -> Vec<(u16, bool, u8, bool, Vec<u8>)> {
        assert_eq!(ts.len() % TS_PACKET_SIZE, 0);
        ts.chunks(TS_PACKET_SIZE)
            .map(|p| {
                assert_eq!(p[0], 0x47);
                let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
                let afc = p[3] >> 4;
                let af = if afc & 2 != 0 {
                    p[5..5 + usize::from(p[4])].to_vec()
                } else {
                    Vec::new()
                };
                (pid, p[1] & 0x40 != 0, p[3] & 0x0f, afc & 1 != 0, af)
            })
            .collect()
    }

    #[test]
    fn adts_header_for_lc_stereo_44100() {
        let params = AdtsParams::new(&AacConfig::parse(&[0x12, 0x10]).unwrap()).unwrap();
        assert_eq!(
            params.header(100).unwrap(),
            [0xff, 0xf1, 0x50, 0x80, 0x0d, 0x7f, 0xfc]
        );
        let wrapped = params.wrap(&[1, 2, 3]).unwrap();
        assert_eq!(wrapped.len(), 10);
        assert_eq!(&wrapped[7..], &[1, 2, 3]);
        assert_eq!(
            params.header(8185),
            Err(TsError::AdtsFrameTooLarge {
                len: 8185,
                max: 8184
            })
        );
    }

    #[test]
    fn adts_rejects_what_it_cannot_express() {
        let config = |object_type, sample_rate, channels| AacConfig {
            object_type,
            sample_rate,
            channels,
        };
        assert_eq!(
            AdtsParams::new(&config(5, 44100, 2)),
            Err(TsError::UnsupportedAacObjectType(5))
        );
        assert_eq!(
            AdtsParams::new(&config(2, 44000, 2)),
            Err(TsError::UnsupportedSampleRate(44000))
        );
        assert_eq!(
            AdtsParams::new(&config(2, 48000, 0)),
            Err(TsError::UnsupportedChannels(0))
        );
        // 48 kHz mono: index 3, channel configuration 1.
        let h = AdtsParams::new(&config(2, 48000, 1))
            .unwrap()
            .header(0)
            .unwrap();
        assert_eq!((h[2] >> 2) & 0x0f, 3);
        assert_eq!(((h[2] & 1) << 2) | (h[3] >> 6), 1);
    }

    #[test]
    fn annex_b_adds_delimiter_and_parameter_sets_on_keyframes() {
        let config = AvcConfig::parse(&avc_record()).unwrap();
        let sei: &[u8] = &[0x06, 0x05, 0x01];
        let idr: &[u8] = &[0x65, 0x88, 0x84];
        let mut key = video(0, true, 1);
        key.data = avcc(&[sei, idr]);
        let mut expected = vec![0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1];
        expected.extend_from_slice(SPS);
        expected.extend_from_slice(&[0, 0, 0, 1]);
        expected.extend_from_slice(PPS);
        expected.extend_from_slice(&[0, 0, 0, 1, 0x06, 0x05, 0x01, 0, 0, 0, 1, 0x65, 0x88, 0x84]);
        assert_eq!(annex_b(&key, &config).unwrap(), expected);

        // Inter frames get no parameter sets; an in-band delimiter is not doubled.
        let mut inter = video(33, false, 1);
        inter.data = avcc(&[&[0x09, 0x30], &[0x41, 0x9a]]);
        assert_eq!(
            annex_b(&inter, &config).unwrap(),
            vec![0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x41, 0x9a]
        );
    }

    #[test]
    fn annex_b_rejects_lengths_past_the_frame() {
        let config = AvcConfig::parse(&avc_record()).unwrap();
        let mut p = video(0, false, 1);
        p.data = Bytes::from_static(&[0, 0, 0, 9, 0x41, 0x9a]);
        assert_eq!(
            annex_b(&p, &config),
            Err(TsError::TruncatedNal {
                offset: 0,
                len: 9,
                frame_len: 6
            })
        );
        p.data = Bytes::from_static(&[0, 0, 0, 1, 0x41, 0]);
        assert!(matches!(
            annex_b(&p, &config),
            Err(TsError::TruncatedNal { offset: 5, .. })
        ));
    }

    #[test]
    fn segment_starts_with_pat_and_pmt_and_keyframe_is_random_access() {
        let ts = TsMuxer::new().mux(&av_segment(0, 0)).unwrap();
        let p = packets(&ts);
        assert_eq!(p[0].0, 0);
        assert_eq!(p[1].0, PMT_PID);
        // PMT lists both streams, H.264 first, PCR on video.
        let pmt = &ts[TS_PACKET_SIZE + 5..];
        assert_eq!(pmt[0], 0x02);
        assert_eq!(u16::from_be_bytes([pmt[8] & 0x1f, pmt[9]]), VIDEO_PID);
        assert_eq!(&pmt[12..17], &[0x1b, 0xe1, 0x00, 0xf0, 0x00]);
        assert_eq!(&pmt[17..22], &[0x0f, 0xe1, 0x01, 0xf0, 0x00]);
        let section_len = usize::from(u16::from_be_bytes([pmt[1] & 0x0f, pmt[2]]));
        assert_eq!(crc32_mpeg2(&pmt[..3 + section_len]), 0, "CRC checks out");

        let (pid, start, _, _, af) = &p[2];
        assert_eq!((*pid, *start), (VIDEO_PID, true));
        assert_eq!(af[0] & 0x50, 0x50, "random access and PCR on the keyframe");
        // The PES carries PTS and DTS, starting at the 10 s origin.
        let pes = &ts[2 * TS_PACKET_SIZE + 4 + 1 + af.len()..];
        assert_eq!(&pes[..4], &[0, 0, 1, 0xe0]);
        assert_eq!(pes[7], 0xc0);
        let ts_of = |b: &[u8]| {
            (i64::from(b[0] >> 1 & 7) << 30)
                | (i64::from(u16::from_be_bytes([b[1], b[2]]) >> 1) << 15)
                | i64::from(u16::from_be_bytes([b[3], b[4]]) >> 1)
        };
        assert_eq!(ts_of(&pes[9..14]), ORIGIN_90K + 66 * 90);
        assert_eq!(ts_of(&pes[14..19]), ORIGIN_90K);
    }

    #[test]
    fn continuity_counters_continue_across_segments() {
        let mut muxer = TsMuxer::new();
        let mut all = Vec::new();
        for (i, start) in [0, 1000, 2000].into_iter().enumerate() {
            all.extend(packets(&muxer.mux(&av_segment(i as u64, start)).unwrap()));
        }
        let mut last: std::collections::HashMap<u16, u8> = Default::default();
        for (pid, _, cc, payload, _) in all {
            if let Some(prev) = last.get(&pid) {
                let expected = if payload { (prev + 1) & 0x0f } else { *prev };
                assert_eq!(cc, expected, "pid {pid:#x}");
            }
            last.insert(pid, cc);
        }
    }

    #[test]
    fn last_packet_of_each_pes_is_stuffed() {
        let ts = TsMuxer::new().mux(&av_segment(0, 0)).unwrap();
        // Every PES is followed directly by the next unit start (or the end): no packet
        // mixes two PES, and all are 188 bytes (checked by `packets`).
        let p = packets(&ts);
        let pes_starts = p
            .iter()
            .filter(|p| p.0 != 0 && p.0 != PMT_PID && p.1)
            .count();
        assert_eq!(pes_starts, 60);
        // Around one packet's payload, the stuffing takes every size, including the single
        // byte that needs a zero-length adaptation field.
        for size in 140..400 {
            let frame = video(0, false, size);
            let ts = TsMuxer::new()
                .mux(&segment(0, vec![frame.clone()]))
                .unwrap();
            // Reassembled payloads give back exactly the PES: stuffing went into adaptation
            // fields, never into the payload.
            let mut payload = Vec::new();
            for p in ts.chunks(TS_PACKET_SIZE).skip(2) {
                let af_len = if p[3] & 0x20 != 0 {
                    1 + usize::from(p[4])
                } else {
                    0
                };
                payload.extend_from_slice(&p[4 + af_len..]);
            }
            let config = AvcConfig::parse(&avc_record()).unwrap();
            let es = annex_b(&frame, &config).unwrap();
            let expected = pes(STREAM_ID_VIDEO, ORIGIN_90K + 66 * 90, ORIGIN_90K, &es, true);
            assert_eq!(payload, expected.unwrap(), "size {size}");
        }
    }

    fn pcr_gaps(ts: &[u8], pid: u16) -> Vec<i64> {
        let pcrs: Vec<i64> = ts
            .chunks(TS_PACKET_SIZE)
            .filter(|p| u16::from_be_bytes([p[1] & 0x1f, p[2]]) == pid)
            .filter(|p| p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x10 != 0)
            .map(|p| {
                let b = &p[6..12];
                (i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])) << 1)
                    | i64::from(b[4] >> 7)
            })
            .collect();
        pcrs.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[test]
    fn pcr_stays_under_100_ms_at_low_frame_rates() {
        // 4 fps video: the audio between frames gets PCR-only packets on the video PID.
        let mut packets = Vec::new();
        for i in 0..8 {
            packets.push(video(i * 250, i == 0, 2000));
            for a in 0..11 {
                packets.push(audio(i * 250 + a * 23));
            }
        }
        let ts = TsMuxer::new().mux(&segment(0, packets)).unwrap();
        let gaps = pcr_gaps(&ts, VIDEO_PID);
        assert!(gaps.len() > 8, "{gaps:?}");
        assert!(gaps.iter().all(|g| (0..=9000).contains(g)), "{gaps:?}");
        let ts = TsMuxer::new().mux(&av_segment(0, 0)).unwrap();
        assert!(
            pcr_gaps(&ts, VIDEO_PID)
                .iter()
                .all(|g| (0..=9000).contains(g))
        );
    }

    #[test]
    fn audio_only_segment_has_pcr_on_audio() {
        let packets_in: Vec<Packet> = (0..50).map(|i| audio(i * 23)).collect();
        let ts = TsMuxer::new().mux(&segment(0, packets_in)).unwrap();
        let p = packets(&ts);
        let pmt = &ts[TS_PACKET_SIZE + 5..];
        assert_eq!(u16::from_be_bytes([pmt[8] & 0x1f, pmt[9]]), AUDIO_PID);
        assert_eq!(&pmt[12..17], &[0x0f, 0xe1, 0x01, 0xf0, 0x00]);
        assert!(p.iter().all(|p| p.0 != VIDEO_PID));
        let pcrs = p
            .iter()
            .filter(|p| p.4.first().is_some_and(|f| f & 0x10 != 0))
            .count();
        assert_eq!(pcrs, 50, "a PCR on every audio PES");
    }

    #[test]
    fn video_only_segment_lists_only_h264() {
        let frames = (0..10).map(|i| video(i * 33, i == 0, 500)).collect();
        let ts = TsMuxer::new().mux(&segment(0, frames)).unwrap();
        let pmt = &ts[TS_PACKET_SIZE + 5..];
        let section_len = usize::from(u16::from_be_bytes([pmt[1] & 0x0f, pmt[2]]));
        assert_eq!(section_len, 9 + 5 + 4, "one stream entry");
        assert_eq!(&pmt[12..17], &[0x1b, 0xe1, 0x00, 0xf0, 0x00]);
        assert!(packets(&ts).iter().all(|p| p.0 != AUDIO_PID));
    }

    #[test]
    fn pmt_version_changes_with_the_track_set() {
        let version = |ts: &[u8]| (ts[TS_PACKET_SIZE + 5 + 5] >> 1) & 0x1f;
        let mut muxer = TsMuxer::new();
        let audio_only = segment(0, (0..5).map(|i| audio(i * 23)).collect());
        assert_eq!(version(&muxer.mux(&audio_only).unwrap()), 0);
        assert_eq!(version(&muxer.mux(&audio_only).unwrap()), 0);
        assert_eq!(version(&muxer.mux(&av_segment(2, 200)).unwrap()), 1);
    }

    #[test]
    fn errors_for_missing_config_empty_segment_and_huge_frames() {
        let mut seg = av_segment(0, 0);
        seg.audio_config = None;
        assert_eq!(
            TsMuxer::new().mux(&seg),
            Err(TsError::MissingConfig {
                track: Track::Audio
            })
        );
        let mut empty = av_segment(3, 0);
        empty.packets.clear();
        assert_eq!(
            TsMuxer::new().mux(&empty),
            Err(TsError::EmptySegment { sequence: 3 })
        );
        let huge = segment(0, vec![video(0, true, MAX_PES_BYTES)]);
        assert!(matches!(
            TsMuxer::new().mux(&huge),
            Err(TsError::PesTooLarge { .. })
        ));
    }
}
