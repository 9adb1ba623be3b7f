//! MPEG-TS (ISO/IEC 13818-1) demuxing into timestamped [`Packet`]s. The muxer, the other
//! direction, is [`crate::hls::ts`].
//!
//! Encoders send MPEG-TS over SRT, and Livepeer orchestrators return transcoded renditions as
//! MPEG-TS; both come through [`TsDemuxer`], which knows nothing of where its bytes come from.
//! Feed it bytes in any chunking with [`TsDemuxer::push`], collect the packets it completes,
//! and call [`TsDemuxer::finish`] at the end of the input.
//!
//! What comes out matches what the FLV demuxer produces, so every later stage handles both:
//! - H.264 (stream type 0x1B): each PES is one access unit, turned from Annex B into AVCC with
//!   4-byte lengths. Access unit delimiters are dropped, and the SPS and PPS are taken out of
//!   the frames and sent as an AVCDecoderConfigurationRecord [`PacketKind::Config`] packet when
//!   they first appear and whenever they change. A frame is a keyframe when it holds an IDR
//!   slice. Frames before the first SPS and PPS are dropped: nothing could decode them.
//! - AAC in ADTS (stream type 0x0F): a PES may hold several ADTS frames; each becomes one raw AAC
//!   frame with its own timestamp (the PES timestamp plus 1024 samples per frame), preceded by
//!   an AudioSpecificConfig packet when the configuration first appears or changes. ADTS frames
//!   split across PES packets are joined.
//!
//! Timestamps: the 33-bit 90 kHz PTS and DTS are unwrapped onto one `i64` timeline shared by
//! both tracks (so the 26.5-hour wrap does not go backwards) and floored to milliseconds. The
//! source's origin is kept, not moved to zero, so a rendition's timestamps still line up with
//! those of the source it was made from.
//!
//! Damage that a network can cause (lost or corrupt packets, continuity gaps, bad CRCs) drops
//! what it touches and demuxing carries on; [`TsDemuxer::stats`] counts it. Input that cannot be
//! MPEG-TS at all, codecs the pipeline cannot carry, and oversized PES packets are errors.
//! Every buffer is bounded: the unsynced tail (under two TS packets), one PES per track
//! ([`TsDemuxerLimits::max_pes_bytes`]), one PSI section, one partial ADTS frame.

use bytes::{Bytes, BytesMut};

use crate::flv::AAC_SAMPLE_RATES;
use crate::h264;
use crate::hls::ts::{TS_PACKET_SIZE, crc32_mpeg2};
use crate::packet::{Packet, PacketKind, Track};

const SYNC_BYTE: u8 = 0x47;
const PAT_PID: u16 = 0;
const TABLE_ID_PAT: u8 = 0x00;
const TABLE_ID_PMT: u8 = 0x02;
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_ADTS_AAC: u8 = 0x0f;
/// PTS and DTS count a 90 kHz clock in 33 bits.
const TIMESTAMP_WRAP: i64 = 1 << 33;
/// PAT and PMT sections are at most 1024 bytes (ISO/IEC 13818-1 2.4.4.3 and 2.4.4.8).
const MAX_SECTION_BYTES: usize = 1024;
/// Samples in one AAC frame (AAC-LC, Main, SSR and LTP: what ADTS can carry).
const AAC_SAMPLES_PER_FRAME: i64 = 1024;
const ADTS_HEADER_LEN: usize = 7;
const ADTS_HEADER_WITH_CRC_LEN: usize = 9;

/// Bounds on what one input may make the demuxer hold.
#[derive(Debug, Clone)]
pub struct TsDemuxerLimits {
    /// Largest PES packet (one video frame, or a run of audio frames) accepted.
    pub max_pes_bytes: usize,
    /// Bytes without a plausible TS packet after which the input is declared not MPEG-TS.
    pub max_unsynced_bytes: usize,
}

impl Default for TsDemuxerLimits {
    fn default() -> Self {
        Self {
            max_pes_bytes: crate::hls::ts::MAX_PES_BYTES,
            max_unsynced_bytes: 64 * 1024,
        }
    }
}

/// Why demuxing stopped. After an error the input should be abandoned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsDemuxError {
    /// No run of sync bytes 188 bytes apart within [`TsDemuxerLimits::max_unsynced_bytes`].
    #[error("not MPEG-TS: no transport stream packet in {skipped} bytes")]
    NoSync {
        /// Bytes skipped while looking for packets.
        skipped: usize,
    },
    /// A PES packet grew past [`TsDemuxerLimits::max_pes_bytes`].
    #[error("PES packet on PID {pid} exceeds the {limit}-byte limit")]
    PesTooLarge {
        /// The PID it arrived on.
        pid: u16,
        /// The configured limit.
        limit: usize,
    },
    /// The program carries video or audio only in a codec other than H.264 or AAC.
    #[error(
        "unsupported {kind} codec {name} (MPEG-TS stream type 0x{stream_type:02x}); only H.264 video and AAC audio are accepted"
    )]
    UnsupportedCodec {
        /// `video` or `audio`.
        kind: &'static str,
        /// The PMT's stream type.
        stream_type: u8,
        /// A human name for it.
        name: &'static str,
    },
    /// The ADTS stream uses a feature the pipeline cannot carry.
    #[error("unsupported AAC in ADTS: {0}")]
    UnsupportedAdts(&'static str),
}

/// What was dropped or skipped so far; damage does not stop demuxing, but it is worth knowing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TsDemuxStats {
    /// Transport stream packets read.
    pub ts_packets: u64,
    /// Bytes skipped while (re)gaining packet sync.
    pub skipped_bytes: u64,
    /// Continuity counter gaps on the PIDs read (lost packets).
    pub continuity_errors: u64,
    /// PES packets and PSI sections dropped as damaged or incomplete.
    pub dropped_units: u64,
}

/// Reads one program's H.264 and AAC out of an MPEG-TS byte stream. See the module docs.
#[derive(Debug)]
pub struct TsDemuxer {
    limits: TsDemuxerLimits,
    /// Bytes of an incomplete (or not yet confirmed) TS packet from the previous push.
    tail: Vec<u8>,
    /// True once two sync bytes 188 bytes apart were seen, until a packet lacks one.
    synced: bool,
    /// Bytes skipped since sync was last held.
    unsynced_run: usize,
    pat: SectionReader,
    pmt: Option<SectionReader>,
    video: Option<PesReader>,
    audio: Option<PesReader>,
    video_track: VideoTrack,
    audio_track: AudioTrack,
    clock: Clock,
    stats: TsDemuxStats,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsDemuxer {
    /// A demuxer with the default limits.
    pub fn new() -> Self {
        Self::with_limits(TsDemuxerLimits::default())
    }

    /// A demuxer with the given limits.
    pub fn with_limits(limits: TsDemuxerLimits) -> Self {
        Self {
            limits,
            tail: Vec::with_capacity(2 * TS_PACKET_SIZE),
            synced: false,
            unsynced_run: 0,
            pat: SectionReader::new(PAT_PID),
            pmt: None,
            video: None,
            audio: None,
            video_track: VideoTrack::default(),
            audio_track: AudioTrack::default(),
            clock: Clock::default(),
            stats: TsDemuxStats::default(),
        }
    }

    /// What was dropped or skipped so far.
    pub fn stats(&self) -> TsDemuxStats {
        self.stats
    }

    /// Demuxes `data`, appending the packets it completes to `out` in stream order. A video
    /// frame is complete once the next one starts (MPEG-TS video PES packets usually have no
    /// length), so video lags the input by one frame; [`TsDemuxer::finish`] flushes it.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Packet>) -> Result<(), TsDemuxError> {
        let mut input = std::mem::take(&mut self.tail);
        input.extend_from_slice(data);
        let consumed = self.read_packets(&input, false, out)?;
        input.drain(..consumed);
        self.tail = input;
        Ok(())
    }

    /// Ends the input: completes the PES packets still open and appends their packets to `out`.
    pub fn finish(&mut self, out: &mut Vec<Packet>) -> Result<(), TsDemuxError> {
        let input = std::mem::take(&mut self.tail);
        self.read_packets(&input, true, out)?;
        for track in [Track::Video, Track::Audio] {
            let reader = match track {
                Track::Video => self.video.as_mut(),
                Track::Audio => self.audio.as_mut(),
            };
            if let Some(pes) = reader.and_then(PesReader::take) {
                self.on_pes(track, pes, out)?;
            }
        }
        Ok(())
    }

    /// Reads every whole TS packet in `input`; returns how many bytes were used. At the end of
    /// the input (`last`) a packet whose successor cannot be checked is taken on trust.
    fn read_packets(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<Packet>,
    ) -> Result<usize, TsDemuxError> {
        let mut pos = 0;
        while input.len() - pos >= TS_PACKET_SIZE {
            let rest = &input[pos..];
            let starts_with_sync = rest[0] == SYNC_BYTE;
            let next_sync = rest.get(TS_PACKET_SIZE).map(|&b| b == SYNC_BYTE);
            // A packet counts when the next one starts with a sync byte too; only at the end of
            // what has arrived is a packet taken on trust (while in sync, or at the very end).
            let accept = starts_with_sync
                && match next_sync {
                    Some(confirmed) => confirmed,
                    None => self.synced || last,
                };
            if accept {
                self.synced = true;
                self.unsynced_run = 0;
                let packet: &[u8; TS_PACKET_SIZE] = rest[..TS_PACKET_SIZE]
                    .try_into()
                    .expect("sliced to the packet size");
                self.read_packet(packet, out)?;
                pos += TS_PACKET_SIZE;
                continue;
            }
            if starts_with_sync && next_sync.is_none() {
                // Unsynced and the next packet's first byte has not arrived: wait for it.
                break;
            }
            // Lost (or never had) sync: move on to the next candidate sync byte.
            self.synced = false;
            let skip = rest[1..]
                .iter()
                .position(|&b| b == SYNC_BYTE)
                .map_or(rest.len(), |i| i + 1);
            pos += skip;
            self.unsynced_run += skip;
            self.stats.skipped_bytes += skip as u64;
            if self.unsynced_run > self.limits.max_unsynced_bytes {
                return Err(TsDemuxError::NoSync {
                    skipped: self.unsynced_run,
                });
            }
        }
        Ok(pos)
    }

    fn read_packet(
        &mut self,
        packet: &[u8; TS_PACKET_SIZE],
        out: &mut Vec<Packet>,
    ) -> Result<(), TsDemuxError> {
        self.stats.ts_packets += 1;
        let transport_error = packet[1] & 0x80 != 0;
        let unit_start = packet[1] & 0x40 != 0;
        let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
        let control = (packet[3] >> 4) & 0x03;
        let counter = packet[3] & 0x0f;
        if transport_error {
            // The packet is known to be damaged: treat it as lost.
            self.mark_lost(pid);
            return Ok(());
        }
        let mut payload_start = 4;
        let mut discontinuity = false;
        if control & 0b10 != 0 {
            let field_len = usize::from(packet[4]);
            if field_len > 0 {
                discontinuity = packet[5] & 0x80 != 0;
            }
            payload_start = 5 + field_len;
            let max = if control == 0b11 { 182 } else { 183 };
            if field_len > max {
                self.mark_lost(pid);
                return Ok(());
            }
        }
        if control & 0b01 == 0 {
            // No payload (or the reserved value 0): the continuity counter does not advance.
            return Ok(());
        }
        let payload = &packet[payload_start..];
        let header = PayloadHeader {
            unit_start,
            counter,
            discontinuity,
        };

        if pid == PAT_PID {
            for section in self.pat.push(header, payload, &mut self.stats) {
                self.on_pat(&section);
            }
        } else if let Some(pmt) = self.pmt.as_mut().filter(|r| r.pid == pid) {
            let sections = pmt.push(header, payload, &mut self.stats);
            for section in sections {
                self.on_pmt(&section)?;
            }
        } else if let Some(track) = self.track_of(pid) {
            let limit = self.limits.max_pes_bytes;
            let reader = match track {
                Track::Video => self.video.as_mut(),
                Track::Audio => self.audio.as_mut(),
            }
            .expect("track_of found the reader");
            let completed = reader.push(header, payload, limit, &mut self.stats)?;
            for pes in completed {
                self.on_pes(track, pes, out)?;
            }
        }
        Ok(())
    }

    fn track_of(&self, pid: u16) -> Option<Track> {
        if self.video.as_ref().is_some_and(|r| r.pid == pid) {
            Some(Track::Video)
        } else if self.audio.as_ref().is_some_and(|r| r.pid == pid) {
            Some(Track::Audio)
        } else {
            None
        }
    }

    fn mark_lost(&mut self, pid: u16) {
        if let Some(track) = self.track_of(pid) {
            let reader = match track {
                Track::Video => self.video.as_mut(),
                Track::Audio => self.audio.as_mut(),
            };
            if let Some(reader) = reader {
                reader.broken = true;
            }
        }
    }

    fn on_pat(&mut self, section: &[u8]) {
        if section.first() != Some(&TABLE_ID_PAT) || section.len() < 12 {
            return;
        }
        // After the 8-byte header: 4-byte program entries, then the CRC. The first program
        // (program_number 0 names the network PID) is the one demuxed.
        let entries = &section[8..section.len() - 4];
        let pmt_pid = entries
            .chunks_exact(4)
            .find(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
            .map(|e| (u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]));
        if let Some(pid) = pmt_pid
            && self.pmt.as_ref().is_none_or(|r| r.pid != pid)
        {
            self.pmt = Some(SectionReader::new(pid));
        }
    }

    fn on_pmt(&mut self, section: &[u8]) -> Result<(), TsDemuxError> {
        if section.first() != Some(&TABLE_ID_PMT) || section.len() < 16 {
            return Ok(());
        }
        let program_info_len = usize::from(u16::from_be_bytes([section[10], section[11]]) & 0x0fff);
        let end = section.len() - 4;
        let mut pos = 12 + program_info_len;
        let mut video: Option<u16> = None;
        let mut audio: Option<u16> = None;
        let mut other_video: Option<(u8, &'static str)> = None;
        let mut other_audio: Option<(u8, &'static str)> = None;
        while pos + 5 <= end {
            let stream_type = section[pos];
            let pid = (u16::from(section[pos + 1] & 0x1f) << 8) | u16::from(section[pos + 2]);
            let info_len =
                usize::from(u16::from_be_bytes([section[pos + 3], section[pos + 4]]) & 0x0fff);
            pos += 5 + info_len;
            match stream_type {
                STREAM_TYPE_H264 => {
                    video.get_or_insert(pid);
                }
                STREAM_TYPE_ADTS_AAC => {
                    audio.get_or_insert(pid);
                }
                other => match unsupported_codec(other) {
                    Some(("video", name)) => {
                        other_video.get_or_insert((other, name));
                    }
                    Some((_, name)) => {
                        other_audio.get_or_insert((other, name));
                    }
                    None => {}
                },
            }
        }
        // A program whose only video (or audio) is in another codec would silently lose that
        // track; say why instead.
        for (found, other, kind) in [(video, other_video, "video"), (audio, other_audio, "audio")] {
            if let (None, Some((stream_type, name))) = (found, other) {
                return Err(TsDemuxError::UnsupportedCodec {
                    kind,
                    stream_type,
                    name,
                });
            }
        }
        if video != self.video.as_ref().map(|r| r.pid) {
            self.video = video.map(PesReader::new);
        }
        if audio != self.audio.as_ref().map(|r| r.pid) {
            self.audio = audio.map(PesReader::new);
            self.audio_track.pending.clear();
        }
        Ok(())
    }

    fn on_pes(
        &mut self,
        track: Track,
        pes: Bytes,
        out: &mut Vec<Packet>,
    ) -> Result<(), TsDemuxError> {
        let Some(parsed) = parse_pes(&pes) else {
            self.stats.dropped_units += 1;
            return Ok(());
        };
        let payload = pes.slice(parsed.payload);
        // Unwrapped DTS, and the PTS as its (signed) offset from it.
        let timestamps = parsed.pts.map(|pts| {
            let dts = parsed.dts.unwrap_or(pts);
            let offset = signed_33(pts - dts);
            let dts = self.clock.extend(dts);
            (dts + offset, dts)
        });
        match track {
            Track::Video => {
                // Without a timestamp a frame cannot be placed in time.
                if let Some((pts, dts)) = timestamps {
                    self.video_track.access_unit(&payload, pts, dts, out);
                } else {
                    self.stats.dropped_units += 1;
                }
                Ok(())
            }
            Track::Audio => self
                .audio_track
                .pes(&payload, timestamps.map(|(pts, _)| pts), out),
        }
    }
}

/// What a TS packet header says about its payload.
#[derive(Debug, Clone, Copy)]
struct PayloadHeader {
    unit_start: bool,
    counter: u8,
    discontinuity: bool,
}

/// Continuity counter tracking shared by PSI and PES readers.
#[derive(Debug, Default)]
struct Continuity {
    last: Option<u8>,
}

enum ContinuityCheck {
    InOrder,
    Duplicate,
    Gap,
}

impl Continuity {
    fn check(&mut self, header: PayloadHeader) -> ContinuityCheck {
        let previous = self.last.replace(header.counter);
        match previous {
            _ if header.discontinuity => ContinuityCheck::InOrder,
            None => ContinuityCheck::InOrder,
            Some(last) if last == header.counter => ContinuityCheck::Duplicate,
            Some(last) if (last + 1) & 0x0f == header.counter => ContinuityCheck::InOrder,
            Some(_) => ContinuityCheck::Gap,
        }
    }
}

/// Reassembles PSI sections (PAT, PMT) from TS payloads and checks their CRC.
#[derive(Debug)]
struct SectionReader {
    pid: u16,
    continuity: Continuity,
    /// The section being assembled; empty when none is.
    buf: Vec<u8>,
}

impl SectionReader {
    fn new(pid: u16) -> Self {
        Self {
            pid,
            continuity: Continuity::default(),
            buf: Vec::new(),
        }
    }

    /// Adds a payload; returns the sections it completed that have a valid CRC.
    fn push(
        &mut self,
        header: PayloadHeader,
        payload: &[u8],
        stats: &mut TsDemuxStats,
    ) -> Vec<Vec<u8>> {
        match self.continuity.check(header) {
            ContinuityCheck::Duplicate => return Vec::new(),
            ContinuityCheck::Gap => {
                stats.continuity_errors += 1;
                if !self.buf.is_empty() {
                    stats.dropped_units += 1;
                    self.buf.clear();
                }
            }
            ContinuityCheck::InOrder => {}
        }
        let mut sections = Vec::new();
        let mut data = payload;
        if header.unit_start {
            let Some((&pointer, rest)) = data.split_first() else {
                return sections;
            };
            let pointer = usize::from(pointer);
            if pointer > rest.len() {
                self.buf.clear();
                return sections;
            }
            // The bytes before the pointer end the section in progress.
            if !self.buf.is_empty() {
                self.buf.extend_from_slice(&rest[..pointer]);
                self.take_sections(&mut sections, stats);
                self.buf.clear();
            }
            data = &rest[pointer..];
        } else if self.buf.is_empty() {
            // A continuation of a section whose start was never seen.
            return sections;
        }
        self.buf.extend_from_slice(data);
        self.take_sections(&mut sections, stats);
        sections
    }

    /// Moves every complete section out of the buffer, keeping an incomplete last one.
    fn take_sections(&mut self, sections: &mut Vec<Vec<u8>>, stats: &mut TsDemuxStats) {
        loop {
            // 0xFF where a table id would be is stuffing up to the end of the packet.
            if self.buf.first().is_none_or(|&b| b == 0xff) {
                self.buf.clear();
                return;
            }
            if self.buf.len() < 3 {
                return;
            }
            let len = 3 + usize::from(u16::from_be_bytes([self.buf[1], self.buf[2]]) & 0x0fff);
            if !(7..=MAX_SECTION_BYTES).contains(&len) {
                stats.dropped_units += 1;
                self.buf.clear();
                return;
            }
            if self.buf.len() < len {
                return;
            }
            let section: Vec<u8> = self.buf.drain(..len).collect();
            // A CRC over the whole section, CRC included, leaves zero.
            if crc32_mpeg2(&section) == 0 {
                sections.push(section);
            } else {
                stats.dropped_units += 1;
            }
        }
    }
}

/// Reassembles the PES packets of one elementary stream.
#[derive(Debug)]
struct PesReader {
    pid: u16,
    continuity: Continuity,
    buf: BytesMut,
    /// Total size from `PES_packet_length`, when the header gave one.
    expected: Option<usize>,
    /// Part of the PES in progress was lost: drop it when it completes.
    broken: bool,
}

impl PesReader {
    fn new(pid: u16) -> Self {
        Self {
            pid,
            continuity: Continuity::default(),
            buf: BytesMut::new(),
            expected: None,
            broken: false,
        }
    }

    /// The PES in progress, if intact; clears it either way.
    fn take(&mut self) -> Option<Bytes> {
        let broken = std::mem::take(&mut self.broken);
        self.expected = None;
        let pes = self.buf.split().freeze();
        (!broken && !pes.is_empty()).then_some(pes)
    }

    /// Adds a payload; returns the PES packets it completed (at most two: the one a new unit
    /// start ends, and a new one complete within this payload).
    fn push(
        &mut self,
        header: PayloadHeader,
        payload: &[u8],
        limit: usize,
        stats: &mut TsDemuxStats,
    ) -> Result<Vec<Bytes>, TsDemuxError> {
        let mut completed = Vec::new();
        match self.continuity.check(header) {
            ContinuityCheck::Duplicate => return Ok(completed),
            ContinuityCheck::Gap => {
                stats.continuity_errors += 1;
                self.broken = !self.buf.is_empty();
            }
            ContinuityCheck::InOrder => {}
        }
        if header.unit_start {
            let had_data = !self.buf.is_empty();
            let broken = self.broken;
            match self.take() {
                Some(pes) => completed.push(pes),
                None if had_data || broken => stats.dropped_units += 1,
                None => {}
            }
        } else if self.buf.is_empty() || self.broken {
            // The start of this PES was never seen, or part of it was lost.
            return Ok(completed);
        }
        if self.buf.len() + payload.len() > limit {
            return Err(TsDemuxError::PesTooLarge {
                pid: self.pid,
                limit,
            });
        }
        self.buf.extend_from_slice(payload);
        if self.expected.is_none() && self.buf.len() >= 6 {
            let length = usize::from(u16::from_be_bytes([self.buf[4], self.buf[5]]));
            // 0 means "unbounded" (video only): the PES ends at the next unit start.
            self.expected = (length > 0).then_some(6 + length);
        }
        if let Some(expected) = self.expected
            && self.buf.len() >= expected
        {
            // Anything after the declared length is stuffing.
            self.buf.truncate(expected);
            if let Some(pes) = self.take() {
                completed.push(pes);
            }
        }
        Ok(completed)
    }
}

/// The parts of a PES packet header the demuxer uses; timestamps are raw 33-bit values.
struct PesHeader {
    pts: Option<i64>,
    dts: Option<i64>,
    payload: std::ops::Range<usize>,
}

/// Parses a PES header of the form every audio and video stream uses. `None` when malformed.
fn parse_pes(pes: &[u8]) -> Option<PesHeader> {
    if pes.len() < 9 || pes[..3] != [0, 0, 1] {
        return None;
    }
    let declared = usize::from(u16::from_be_bytes([pes[4], pes[5]]));
    let end = if declared == 0 {
        pes.len()
    } else {
        6 + declared
    };
    if end > pes.len() || pes[6] & 0xc0 != 0x80 {
        return None;
    }
    let header_len = usize::from(pes[8]);
    let payload_start = 9 + header_len;
    if payload_start > end {
        return None;
    }
    let optional = &pes[9..payload_start];
    let (pts, dts) = match pes[7] >> 6 {
        0b10 => (Some(read_timestamp(optional.get(..5)?)), None),
        0b11 => (
            Some(read_timestamp(optional.get(..5)?)),
            Some(read_timestamp(optional.get(5..10)?)),
        ),
        _ => (None, None),
    };
    Some(PesHeader {
        pts,
        dts,
        payload: payload_start..end,
    })
}

/// A 33-bit PTS or DTS from its 5-byte field (marker bits ignored).
fn read_timestamp(b: &[u8]) -> i64 {
    (i64::from(b[0] >> 1 & 0x07) << 30)
        | (i64::from(b[1]) << 22)
        | (i64::from(b[2] >> 1) << 15)
        | (i64::from(b[3]) << 7)
        | i64::from(b[4] >> 1)
}

/// A difference of 33-bit timestamps as the nearest signed value.
fn signed_33(diff: i64) -> i64 {
    let d = diff.rem_euclid(TIMESTAMP_WRAP);
    if d >= TIMESTAMP_WRAP / 2 {
        d - TIMESTAMP_WRAP
    } else {
        d
    }
}

/// 90 kHz ticks to whole milliseconds, rounding down (also below zero).
fn to_ms(ticks: i64) -> i64 {
    ticks.div_euclid(90)
}

/// Unwraps 33-bit timestamps onto an `i64` timeline: each value is placed nearest to the
/// previous one, so small backward steps (audio interleaved with video, B-frame DTS) stay
/// backward and the wrap goes forward.
#[derive(Debug, Default)]
struct Clock {
    last: Option<i64>,
}

impl Clock {
    fn extend(&mut self, raw: i64) -> i64 {
        let raw = raw & (TIMESTAMP_WRAP - 1);
        let extended = match self.last {
            None => raw,
            Some(last) => last + signed_33(raw - last),
        };
        self.last = Some(extended);
        extended
    }
}

/// Which known stream types are video or audio in a codec this crate does not carry.
fn unsupported_codec(stream_type: u8) -> Option<(&'static str, &'static str)> {
    Some(match stream_type {
        0x01 => ("video", "MPEG-1 video"),
        0x02 => ("video", "MPEG-2 video"),
        0x10 => ("video", "MPEG-4 Part 2 video"),
        0x24 => ("video", "HEVC"),
        0x33 => ("video", "VVC"),
        0xd1 => ("video", "Dirac"),
        0xea => ("video", "VC-1"),
        0x03 => ("audio", "MPEG-1 audio"),
        0x04 => ("audio", "MPEG-2 audio"),
        0x11 => ("audio", "AAC in LATM"),
        0x81 => ("audio", "AC-3"),
        0x87 => ("audio", "E-AC-3"),
        _ => return None,
    })
}

/// H.264 state: the parameter sets in effect.
#[derive(Debug, Default)]
struct VideoTrack {
    sps: Vec<Bytes>,
    pps: Vec<Bytes>,
    /// The record sent for `sps` and `pps`; `None` until both were seen.
    config: Option<Bytes>,
}

impl VideoTrack {
    fn access_unit(&mut self, annex_b: &[u8], pts: i64, dts: i64, out: &mut Vec<Packet>) {
        let unit = h264::access_unit_from_annex_b(annex_b);
        let (dts_ms, pts_ms) = (to_ms(dts), to_ms(pts));
        if !unit.sps.is_empty() || !unit.pps.is_empty() {
            if !unit.sps.is_empty() {
                self.sps = unit.sps;
            }
            if !unit.pps.is_empty() {
                self.pps = unit.pps;
            }
            let record = h264::avc_decoder_config(&self.sps, &self.pps);
            if record.is_some() && record != self.config {
                self.config = record.clone();
                out.extend(record.map(|data| Packet {
                    track: Track::Video,
                    kind: PacketKind::Config,
                    dts_ms,
                    pts_ms: dts_ms,
                    keyframe: false,
                    data,
                }));
            }
        }
        if self.config.is_none() || unit.avcc.is_empty() {
            return;
        }
        out.push(Packet {
            track: Track::Video,
            kind: PacketKind::Frame,
            dts_ms,
            pts_ms,
            keyframe: unit.has_idr,
            data: unit.avcc,
        });
    }
}

/// AAC state: the configuration in effect and the timing of the frames.
#[derive(Debug, Default)]
struct AudioTrack {
    /// The AudioSpecificConfig sent last.
    config: Option<[u8; 2]>,
    sample_rate: u32,
    /// The 90 kHz timestamp of a frame, and how many frames followed it since.
    anchor: Option<(i64, i64)>,
    /// The start of an ADTS frame that the next PES completes.
    pending: BytesMut,
}

impl AudioTrack {
    fn pes(
        &mut self,
        payload: &[u8],
        pts: Option<i64>,
        out: &mut Vec<Packet>,
    ) -> Result<(), TsDemuxError> {
        let carried = self.pending.len();
        self.pending.extend_from_slice(payload);
        let data = self.pending.split().freeze();
        let mut pes_pts = pts;
        let mut pos = 0;
        while data.len() - pos >= ADTS_HEADER_LEN {
            let h = &data[pos..];
            if h[0] != 0xff || h[1] & 0xf6 != 0xf0 {
                // Not at a sync word (damage): skip to the next candidate.
                pos += h[1..]
                    .iter()
                    .position(|&b| b == 0xff)
                    .map_or(h.len(), |i| i + 1);
                continue;
            }
            let header_len = if h[1] & 0x01 != 0 {
                ADTS_HEADER_LEN
            } else {
                ADTS_HEADER_WITH_CRC_LEN
            };
            let frame_len = (usize::from(h[3] & 0x03) << 11)
                | (usize::from(h[4]) << 3)
                | usize::from(h[5] >> 5);
            if frame_len < header_len {
                pos += 1;
                continue;
            }
            if h.len() < frame_len {
                break;
            }
            let object_type = (h[2] >> 6) + 1;
            let sampling_index = (h[2] >> 2) & 0x0f;
            let channels = ((h[2] & 0x01) << 2) | (h[3] >> 6);
            let Some(&sample_rate) = AAC_SAMPLE_RATES.get(usize::from(sampling_index)) else {
                return Err(TsDemuxError::UnsupportedAdts(
                    "reserved sampling frequency index",
                ));
            };
            if h[6] & 0x03 != 0 {
                return Err(TsDemuxError::UnsupportedAdts(
                    "more than one raw data block per ADTS frame",
                ));
            }
            // The PES timestamp belongs to the first frame that starts in this PES.
            if pos >= carried
                && let Some(pts) = pes_pts.take()
            {
                self.anchor = Some((pts, 0));
            }
            let config = [
                (object_type << 3) | (sampling_index >> 1),
                ((sampling_index & 0x01) << 7) | (channels << 3),
            ];
            if self.config != Some(config) {
                // Frame durations change with the rate: time later frames from this one.
                if let Some((anchor, count)) = self.anchor {
                    self.anchor = Some((frame_time(anchor, count, self.sample_rate), 0));
                }
                self.config = Some(config);
                self.sample_rate = sample_rate;
                if let Some((anchor, _)) = self.anchor {
                    let ms = to_ms(anchor);
                    out.push(Packet {
                        track: Track::Audio,
                        kind: PacketKind::Config,
                        dts_ms: ms,
                        pts_ms: ms,
                        keyframe: false,
                        data: Bytes::copy_from_slice(&config),
                    });
                } else {
                    // Untimed frames are dropped; announce the config with the first timed one.
                    self.config = None;
                }
            }
            if let Some((anchor, count)) = self.anchor.as_mut() {
                let ms = to_ms(frame_time(*anchor, *count, self.sample_rate));
                *count += 1;
                out.push(Packet {
                    track: Track::Audio,
                    kind: PacketKind::Frame,
                    dts_ms: ms,
                    pts_ms: ms,
                    keyframe: false,
                    data: data.slice(pos + header_len..pos + frame_len),
                });
            }
            pos += frame_len;
        }
        // At most one ADTS frame (13-bit length) is carried over.
        self.pending.extend_from_slice(&data[pos..]);
        Ok(())
    }
}

/// The 90 kHz time of the frame `count` frames after the one at `anchor`, computed from the
/// anchor each time so that 1024/44100 s frames do not accumulate rounding.
fn frame_time(anchor: i64, count: i64, sample_rate: u32) -> i64 {
    if sample_rate == 0 {
        return anchor;
    }
    anchor + count * AAC_SAMPLES_PER_FRAME * 90_000 / i64::from(sample_rate)
}

/// Demuxes a whole MPEG-TS file (one segment, or what `ffmpeg -f mpegts` writes) into packets,
/// with the same rules as live SRT ingest.
pub fn demux_file(data: &[u8]) -> Result<Vec<Packet>, TsDemuxError> {
    let mut demuxer = TsDemuxer::new();
    let mut packets = Vec::new();
    demuxer.push(data, &mut packets)?;
    demuxer.finish(&mut packets)?;
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::AacConfig;
    use crate::hls::ts::{AdtsParams, TsMuxer};
    use crate::segment::Segment;

    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0];
    const PPS: &[u8] = &[0x68, 0xef, 0x8f, 0xcb];
    /// AAC-LC, 48 kHz, stereo.
    const ASC: [u8; 2] = [0x11, 0x90];

    fn avcc(nals: &[&[u8]]) -> Bytes {
        let mut out = Vec::new();
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
        Bytes::from(out)
    }

    fn record() -> Bytes {
        h264::avc_decoder_config(&[Bytes::from_static(SPS)], &[Bytes::from_static(PPS)]).unwrap()
    }

    fn frame(track: Track, dts_ms: i64, pts_ms: i64, keyframe: bool, data: Bytes) -> Packet {
        Packet {
            track,
            kind: PacketKind::Frame,
            dts_ms,
            pts_ms,
            keyframe,
            data,
        }
    }

    /// Two seconds of 25 fps video with B-frame reordering and 48 kHz audio, as one segment.
    fn av_segment() -> Segment {
        let mut packets = Vec::new();
        let mut audio_ms = 1_000.0;
        for i in 0..50i64 {
            let dts = 1_000 + i * 40;
            let keyframe = i % 25 == 0;
            // Slices big enough to span several TS packets, never ending in a zero byte.
            let mut slice = if keyframe {
                vec![0x65, 0x88]
            } else {
                vec![0x41, 0x9a]
            };
            slice.extend((0..if keyframe { 900 } else { 300 }).map(|j| (i + j) as u8 | 0x01));
            let pts = dts + if keyframe { 80 } else { 40 };
            packets.push(frame(
                Track::Video,
                dts,
                pts,
                keyframe,
                avcc(&[&[0x06, 0x05, 0x01], &slice]),
            ));
            while audio_ms < (dts + 40) as f64 {
                let ms = audio_ms as i64;
                packets.push(frame(
                    Track::Audio,
                    ms,
                    ms,
                    false,
                    Bytes::from(vec![0x21, (ms % 251) as u8, 0x5a]),
                ));
                audio_ms += 1024.0 * 1000.0 / 48_000.0;
            }
        }
        Segment {
            sequence: 0,
            start_ms: 1_000,
            duration_ms: 2_000,
            size_bytes: packets.iter().map(|p| p.data.len() as u64).sum(),
            discontinuity: false,
            video_config: Some(record()),
            audio_config: Some(Bytes::from_static(&ASC)),
            packets,
        }
    }

    fn demux_all(ts: &[u8], chunk: usize) -> (Vec<Packet>, TsDemuxStats) {
        let mut demuxer = TsDemuxer::new();
        let mut out = Vec::new();
        for piece in ts.chunks(chunk) {
            demuxer.push(piece, &mut out).unwrap();
        }
        demuxer.finish(&mut out).unwrap();
        (out, demuxer.stats())
    }

    fn frames(packets: &[Packet], track: Track) -> Vec<&Packet> {
        packets
            .iter()
            .filter(|p| p.track == track && p.kind == PacketKind::Frame)
            .collect()
    }

    #[test]
    fn round_trip_through_our_muxer_keeps_frames_timestamps_and_keyframes() {
        let segment = av_segment();
        let ts = TsMuxer::new().mux(&segment).unwrap();
        let (out, stats) = demux_all(&ts, 1316);
        assert_eq!(
            stats.continuity_errors + stats.dropped_units + stats.skipped_bytes,
            0
        );

        let configs: Vec<&Packet> = out
            .iter()
            .filter(|p| p.kind == PacketKind::Config)
            .collect();
        assert_eq!(configs.len(), 2, "one config per track: {configs:?}");
        let video_config = configs.iter().find(|p| p.track == Track::Video).unwrap();
        assert_eq!(video_config.data, record());
        let audio_config = configs.iter().find(|p| p.track == Track::Audio).unwrap();
        assert_eq!(audio_config.data.as_ref(), &ASC);

        // The muxer moves the origin; differences survive exactly (ms are whole 90 kHz ticks).
        let sent_video: Vec<&Packet> = frames(&segment.packets, Track::Video);
        let got_video = frames(&out, Track::Video);
        assert_eq!(got_video.len(), sent_video.len());
        let shift = got_video[0].dts_ms - sent_video[0].dts_ms;
        for (got, sent) in got_video.iter().zip(&sent_video) {
            // Our muxer adds an AUD and, on keyframes, SPS and PPS; the demuxer takes them out.
            assert_eq!(got.data, sent.data);
            assert_eq!(got.dts_ms - shift, sent.dts_ms);
            assert_eq!(got.pts_ms - shift, sent.pts_ms);
            assert_eq!(got.keyframe, sent.keyframe);
        }
        let sent_audio = frames(&segment.packets, Track::Audio);
        let got_audio = frames(&out, Track::Audio);
        assert_eq!(got_audio.len(), sent_audio.len());
        for (got, sent) in got_audio.iter().zip(&sent_audio) {
            assert_eq!(got.data, sent.data);
            assert_eq!(got.dts_ms - shift, sent.dts_ms);
        }
    }

    #[test]
    fn chunking_does_not_matter_and_garbage_is_skipped() {
        let ts = TsMuxer::new().mux(&av_segment()).unwrap();
        let (whole, _) = demux_all(&ts, ts.len());
        for chunk in [1, 7, 188, 1000] {
            assert_eq!(demux_all(&ts, chunk).0, whole, "chunks of {chunk}");
        }
        // Junk before the stream and between two packets (a damaged network packet).
        let mut damaged = vec![0x47, 0x00, 0x12, 0x47, 0x99];
        damaged.extend_from_slice(&ts[..188 * 3]);
        damaged.extend_from_slice(&[0x47; 5]);
        damaged.extend_from_slice(&ts[188 * 3..]);
        let (out, stats) = demux_all(&damaged, 1316);
        assert_eq!(stats.skipped_bytes, 10);
        assert_eq!(out, whole);
    }

    #[test]
    fn lost_packets_drop_only_the_frames_they_touch() {
        let ts = TsMuxer::new().mux(&av_segment()).unwrap();
        let (whole, _) = demux_all(&ts, 188);
        // Find a video packet in the middle of a PES (no unit start) and drop it.
        let lost = (10..ts.len() / 188)
            .find(|i| {
                let p = &ts[i * 188..];
                let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
                pid == crate::hls::ts::VIDEO_PID && p[1] & 0x40 == 0
            })
            .unwrap();
        let mut damaged = ts[..lost * 188].to_vec();
        damaged.extend_from_slice(&ts[(lost + 1) * 188..]);
        let (out, stats) = demux_all(&damaged, 1316);
        assert_eq!(stats.continuity_errors, 1);
        assert_eq!(stats.dropped_units, 1);
        assert_eq!(
            frames(&out, Track::Video).len(),
            frames(&whole, Track::Video).len() - 1
        );
        assert_eq!(
            frames(&out, Track::Audio).len(),
            frames(&whole, Track::Audio).len()
        );
    }

    #[test]
    fn audio_only_and_video_only_programs() {
        let full = av_segment();
        for keep in [Track::Audio, Track::Video] {
            let mut segment = full.clone();
            segment.packets.retain(|p| p.track == keep);
            let ts = TsMuxer::new().mux(&segment).unwrap();
            let (out, _) = demux_all(&ts, 1316);
            assert!(out.iter().all(|p| p.track == keep));
            assert_eq!(
                frames(&out, keep).len(),
                frames(&segment.packets, keep).len()
            );
        }
    }

    /// Builds a PES around `payload` with a PTS (and a DTS when different).
    fn pes(stream_id: u8, pts: i64, dts: Option<i64>, payload: &[u8], bounded: bool) -> Vec<u8> {
        fn ts(prefix: u8, t: i64) -> [u8; 5] {
            let t = t & (TIMESTAMP_WRAP - 1);
            [
                (prefix << 4) | (((t >> 30) as u8 & 0x07) << 1) | 1,
                (t >> 22) as u8,
                (((t >> 15) as u8) << 1) | 1,
                (t >> 7) as u8,
                ((t as u8) << 1) | 1,
            ]
        }
        let mut header = Vec::new();
        match dts {
            Some(dts) => {
                header.extend_from_slice(&ts(0b0011, pts));
                header.extend_from_slice(&ts(0b0001, dts));
            }
            None => header.extend_from_slice(&ts(0b0010, pts)),
        }
        let mut out = vec![
            0,
            0,
            1,
            stream_id,
            0,
            0,
            0x80,
            if dts.is_some() { 0xc0 } else { 0x80 },
            header.len() as u8,
        ];
        out.extend_from_slice(&header);
        out.extend_from_slice(payload);
        if bounded {
            let len = (out.len() - 6) as u16;
            out[4..6].copy_from_slice(&len.to_be_bytes());
        }
        out
    }

    /// Splits a PES into TS packets on `pid`, stuffing the last one.
    fn packetize(pid: u16, pes: &[u8], cc: &mut u8) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, chunk) in pes.chunks(184).enumerate() {
            let mut p = vec![
                0x47,
                ((pid >> 8) as u8) | if i == 0 { 0x40 } else { 0 },
                pid as u8,
            ];
            if chunk.len() == 184 {
                p.push(0x10 | *cc);
            } else {
                p.push(0x30 | *cc);
                let field = 183 - chunk.len();
                p.push(field as u8);
                if field > 0 {
                    p.push(0);
                    p.resize(5 + field, 0xff);
                }
            }
            p.extend_from_slice(chunk);
            assert_eq!(p.len(), 188);
            out.extend_from_slice(&p);
            *cc = (*cc + 1) & 0x0f;
        }
        out
    }

    /// PAT and PMT (from our muxer) for a program with the given tracks.
    fn tables(video: bool, audio: bool) -> Vec<u8> {
        let mut segment = av_segment();
        segment
            .packets
            .retain(|p| (p.track == Track::Video && video) || (p.track == Track::Audio && audio));
        TsMuxer::new().mux(&segment).unwrap()[..2 * 188].to_vec()
    }

    #[test]
    fn several_adts_frames_per_pes_get_their_own_timestamps() {
        let params = AdtsParams::new(&AacConfig::parse(&[0x12, 0x10]).unwrap()).unwrap(); // 44.1 kHz stereo
        let mut payload = Vec::new();
        for i in 0..5u8 {
            payload.extend_from_slice(&params.wrap(&[0x21, i, 0x33]).unwrap());
        }
        // Two PES: the first ends mid-frame, the second completes it and adds two more.
        let split = payload.len() - 12;
        let mut stream = tables(false, true);
        let mut cc = 0;
        let start = 90_000;
        stream.extend(packetize(
            crate::hls::ts::AUDIO_PID,
            &pes(0xc0, start, None, &payload[..split], true),
            &mut cc,
        ));
        let mut second = payload[split..].to_vec();
        for i in 5..7u8 {
            second.extend_from_slice(&params.wrap(&[0x21, i, 0x33]).unwrap());
        }
        // Its PTS is that of frame 4, the first frame that starts in it.
        let pts4 = start + 4 * 1024 * 90_000 / 44_100;
        stream.extend(packetize(
            crate::hls::ts::AUDIO_PID,
            &pes(0xc0, pts4, None, &second, true),
            &mut cc,
        ));
        let (out, _) = demux_all(&stream, 188);
        assert_eq!(out[0].kind, PacketKind::Config);
        assert_eq!(out[0].data.as_ref(), &[0x12, 0x10]);
        let got = frames(&out, Track::Audio);
        assert_eq!(got.len(), 7);
        for (i, p) in got.iter().enumerate() {
            assert_eq!(p.data.as_ref(), &[0x21, i as u8, 0x33]);
            let expected = (start + i as i64 * 1024 * 90_000 / 44_100) / 90;
            assert_eq!(p.dts_ms, expected, "frame {i}");
        }
    }

    #[test]
    fn annex_b_is_converted_and_parameter_set_changes_are_announced() {
        let mut stream = tables(true, false);
        let mut cc = 0;
        let aud: &[u8] = &[0, 0, 0, 1, 0x09, 0xf0];
        let sps2: &[u8] = &[0x67, 0x4d, 0x00, 0x1f, 0xab];
        let au = |sps: &[u8], slice: &[u8]| {
            let mut b = aud.to_vec();
            for nal in [sps, PPS, slice] {
                b.extend_from_slice(&[0, 0, 1]);
                b.extend_from_slice(nal);
            }
            b
        };
        let idr: &[u8] = &[0x65, 0x88, 0x00, 0x00];
        let p_slice: &[u8] = &[0x41, 0x9a, 0x01];
        // A frame before any parameter set, then IDR, P (no parameter sets), IDR with a new SPS.
        let mut lone = aud.to_vec();
        lone.extend_from_slice(&[0, 0, 1, 0x41, 0x01]);
        for (i, data) in [
            lone,
            au(SPS, idr),
            {
                let mut b = aud.to_vec();
                b.extend_from_slice(&[0, 0, 1]);
                b.extend_from_slice(p_slice);
                b
            },
            au(SPS, idr),
            au(sps2, idr),
        ]
        .iter()
        .enumerate()
        {
            let dts = 900_000 + i as i64 * 3_000;
            stream.extend(packetize(
                crate::hls::ts::VIDEO_PID,
                &pes(0xe0, dts + 6_000, Some(dts), data, false),
                &mut cc,
            ));
        }
        let (out, _) = demux_all(&stream, 188);
        let kinds: Vec<(PacketKind, bool)> = out.iter().map(|p| (p.kind, p.keyframe)).collect();
        assert_eq!(
            kinds,
            vec![
                (PacketKind::Config, false),
                (PacketKind::Frame, true),
                (PacketKind::Frame, false),
                (PacketKind::Frame, true),
                (PacketKind::Config, false),
                (PacketKind::Frame, true),
            ]
        );
        assert_eq!(out[0].data, record());
        // Trailing zeros are not part of the NAL unit.
        assert_eq!(out[1].data, avcc(&[&idr[..2]]));
        assert_eq!(out[2].data, avcc(&[p_slice]));
        assert_eq!((out[1].dts_ms, out[1].pts_ms), (10_033, 10_100));
        assert_eq!(
            out[4].data,
            h264::avc_decoder_config(&[Bytes::from_static(sps2)], &[Bytes::from_static(PPS)])
                .unwrap()
        );
    }

    #[test]
    fn timestamps_unwrap_across_the_33_bit_wrap() {
        let mut clock = Clock::default();
        let near_end = TIMESTAMP_WRAP - 900;
        assert_eq!(clock.extend(near_end), near_end);
        // Audio slightly behind, then the wrap, then a straggler from before it.
        assert_eq!(clock.extend(near_end - 1_800), near_end - 1_800);
        assert_eq!(clock.extend(2_100), TIMESTAMP_WRAP + 2_100);
        assert_eq!(clock.extend(near_end + 300), near_end + 300);
        assert_eq!(clock.extend(5_100), TIMESTAMP_WRAP + 5_100);
        assert_eq!(to_ms(-1), -1);
        assert_eq!(to_ms(180), 2);
    }

    #[test]
    fn unsupported_codecs_and_non_ts_input_are_errors() {
        // Our PMT, with its H.264 stream type changed to HEVC and the CRC recomputed.
        let mut stream = tables(true, false);
        let pmt = &mut stream[188..];
        let section_len = usize::from(u16::from_be_bytes([pmt[6], pmt[7]]) & 0x0fff);
        let section = 5..5 + 3 + section_len;
        let type_at = 5 + 12 + usize::from(u16::from_be_bytes([pmt[15], pmt[16]]) & 0x0fff);
        assert_eq!(pmt[type_at], STREAM_TYPE_H264);
        pmt[type_at] = 0x24;
        let crc_at = section.end - 4;
        let crc = crc32_mpeg2(&pmt[section.start..crc_at]);
        pmt[crc_at..section.end].copy_from_slice(&crc.to_be_bytes());
        let mut demuxer = TsDemuxer::new();
        let err = demuxer.push(&stream, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            TsDemuxError::UnsupportedCodec {
                kind: "video",
                stream_type: 0x24,
                name: "HEVC"
            }
        );
        assert!(err.to_string().contains("only H.264"));

        let flv = b"FLV\x01\x05\x00\x00\x00\x09".repeat(10_000);
        let err = TsDemuxer::new().push(&flv, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, TsDemuxError::NoSync { .. }), "{err:?}");
    }

    #[test]
    fn oversized_pes_is_an_error() {
        let mut stream = tables(true, false);
        let mut cc = 0;
        let big = vec![0u8; 4000];
        stream.extend(packetize(
            crate::hls::ts::VIDEO_PID,
            &pes(0xe0, 0, None, &big, false),
            &mut cc,
        ));
        let mut demuxer = TsDemuxer::with_limits(TsDemuxerLimits {
            max_pes_bytes: 2000,
            ..TsDemuxerLimits::default()
        });
        let err = demuxer.push(&stream, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            TsDemuxError::PesTooLarge {
                pid: crate::hls::ts::VIDEO_PID,
                limit: 2000
            }
        );
    }
}
