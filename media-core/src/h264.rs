//! H.264 bitstream helpers shared by every stage that meets Annex B (start-code delimited) video:
//! encoders write it, MPEG-TS carries it, while our [`Packet`](crate::Packet)s carry AVCC
//! (length-prefixed NAL units) with the parameter sets out of band in an
//! AVCDecoderConfigurationRecord. Also the level table that sizes a rendition.

use bytes::{BufMut, Bytes, BytesMut};

/// NAL unit types this crate treats specially.
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;

/// The type of a NAL unit (its header byte included).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// The NAL units of an Annex B byte stream, without their start codes (3 or 4 bytes) and
/// without trailing zero bytes. Bytes before the first start code are ignored.
pub fn annex_b_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (n, &start) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(data.len(), |next| next - 3);
        // A 4-byte start code and trailing_zero_8bits leave zeros before the next code.
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        if end > start {
            nals.push(&data[start..end]);
        }
    }
    nals
}

/// One Annex B access unit taken apart: the frame as AVCC (4-byte lengths) without parameter
/// sets or delimiters, and the parameter sets it carried in band.
#[derive(Debug, Default)]
pub struct AccessUnit {
    pub avcc: Bytes,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    pub has_idr: bool,
}

/// Splits an Annex B access unit into AVCC frame data and its in-band parameter sets.
pub fn access_unit_from_annex_b(data: &[u8]) -> AccessUnit {
    let mut unit = AccessUnit::default();
    let mut avcc = BytesMut::with_capacity(data.len() + 16);
    for nal in annex_b_nals(data) {
        match nal_type(nal) {
            NAL_SPS => unit.sps.push(Bytes::copy_from_slice(nal)),
            NAL_PPS => unit.pps.push(Bytes::copy_from_slice(nal)),
            NAL_AUD => {}
            kind => {
                unit.has_idr |= kind == NAL_IDR;
                // A NAL unit longer than 4 GiB cannot exist in a bounded input.
                avcc.put_u32(nal.len() as u32);
                avcc.put_slice(nal);
            }
        }
    }
    unit.avcc = avcc.freeze();
    unit
}

/// Builds an AVCDecoderConfigurationRecord (ISO/IEC 14496-15) with 4-byte NAL lengths. `None`
/// without an SPS of at least 4 bytes or without a PPS.
pub fn avc_decoder_config(sps: &[Bytes], pps: &[Bytes]) -> Option<Bytes> {
    let first = sps.first().filter(|s| s.len() >= 4)?;
    if pps.is_empty() || sps.len() > 31 || pps.len() > 255 {
        return None;
    }
    let mut out =
        BytesMut::with_capacity(16 + sps.iter().chain(pps).map(|s| s.len() + 2).sum::<usize>());
    out.put_u8(1);
    out.put_slice(&first[1..4]); // profile, constraint flags, level
    out.put_u8(0xfc | 3); // reserved bits, lengthSizeMinusOne = 3
    out.put_u8(0xe0 | sps.len() as u8);
    for set in sps {
        out.put_u16(u16::try_from(set.len()).ok()?);
        out.put_slice(set);
    }
    out.put_u8(pps.len() as u8);
    for set in pps {
        out.put_u16(u16::try_from(set.len()).ok()?);
        out.put_slice(set);
    }
    Some(out.freeze())
}

/// The lowest H.264 level (times ten, as `level_idc`) whose frame size and macroblock rate
/// limits (ITU-T H.264 table A-1) admit `width` x `height` at `fps`. 52 if none does.
pub fn level_for(width: u32, height: u32, fps: f64) -> u8 {
    // (level_idc, MaxMBPS, MaxFS)
    const LEVELS: [(u8, f64, u64); 16] = [
        (10, 1_485.0, 99),
        (11, 3_000.0, 396),
        (12, 6_000.0, 396),
        (13, 11_880.0, 396),
        (20, 11_880.0, 396),
        (21, 19_800.0, 792),
        (22, 20_250.0, 1_620),
        (30, 40_500.0, 1_620),
        (31, 108_000.0, 3_600),
        (32, 216_000.0, 5_120),
        (40, 245_760.0, 8_192),
        (41, 245_760.0, 8_192),
        (42, 522_240.0, 8_704),
        (50, 589_824.0, 22_080),
        (51, 983_040.0, 36_864),
        (52, 2_073_600.0, 36_864),
    ];
    let macroblocks = u64::from(width.div_ceil(16)) * u64::from(height.div_ceil(16));
    let rate = macroblocks as f64 * fps.max(1.0);
    LEVELS
        .iter()
        .find(|(_, max_mbps, max_fs)| macroblocks <= *max_fs && rate <= *max_mbps)
        .map_or(52, |(level, _, _)| *level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x67, 1, 2, 3, 0, 0, 0, 0, 1, 0x65, 9, 9,
        ];
        let nals = annex_b_nals(&data);
        assert_eq!(
            nals,
            vec![&[0x09, 0xf0][..], &[0x67, 1, 2, 3][..], &[0x65, 9, 9][..]]
        );
    }

    #[test]
    fn an_access_unit_becomes_avcc_and_parameter_sets() {
        let data = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x64, 0, 0x1f, 0, 0, 1, 0x68, 0xee, 0, 0, 1,
            0x65, 7, 7,
        ];
        let unit = access_unit_from_annex_b(&data);
        assert!(unit.has_idr);
        assert_eq!(unit.avcc.as_ref(), &[0, 0, 0, 3, 0x65, 7, 7]);
        let record = avc_decoder_config(&unit.sps, &unit.pps).unwrap();
        let parsed = crate::flv::AvcConfig::parse(&record).unwrap();
        assert_eq!(
            (parsed.profile, parsed.level, parsed.nal_length_size),
            (100, 31, 4)
        );
        assert_eq!(parsed.sps[0].as_ref(), &[0x67, 0x64, 0, 0x1f]);
        assert_eq!(parsed.pps[0].as_ref(), &[0x68, 0xee]);
    }

    #[test]
    fn no_record_without_parameter_sets() {
        assert!(avc_decoder_config(&[], &[Bytes::from_static(&[0x68])]).is_none());
        assert!(avc_decoder_config(&[Bytes::from_static(&[0x67, 66, 0, 30])], &[]).is_none());
    }

    #[test]
    fn levels_follow_table_a1() {
        assert_eq!(level_for(426, 240, 30.0), 21);
        assert_eq!(level_for(640, 360, 30.0), 30);
        assert_eq!(level_for(854, 480, 30.0), 31);
        assert_eq!(level_for(1280, 720, 30.0), 31);
        assert_eq!(level_for(1280, 720, 60.0), 32);
        assert_eq!(level_for(1920, 1080, 30.0), 40);
        assert_eq!(level_for(1920, 1080, 60.0), 42);
        assert_eq!(level_for(3840, 2160, 30.0), 51);
    }
}
