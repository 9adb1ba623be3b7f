//! The messages of go-livepeer's `net/lp_rpc.proto` (proto3, `package net`) that a gateway sends or reads, written
//! out by hand with prost so that building needs no `protoc` (§2.2 of the protocol reference). Field numbers and
//! types follow the reference exactly; fields the gateway never touches (hardware information, AI capacities) are
//! left out, and prost skips them when they arrive.
//!
//! Integers inside [`TicketParams`] are big-endian, minimal-length byte strings (Go `big.Int.Bytes()`): see
//! [`uint_bytes`] and [`parse_uint`].

use alloy::primitives::U256;

/// The gRPC path of `Orchestrator.GetOrchestrator`.
pub const GET_ORCHESTRATOR_PATH: &str = "/net.Orchestrator/GetOrchestrator";

/// `GetOrchestrator` request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OrchestratorRequest {
    /// The gateway's 20-byte ETH address (20 zero bytes off-chain).
    #[prost(bytes = "vec", tag = "1")]
    pub address: Vec<u8>,
    /// The InfoSig (empty off-chain).
    #[prost(bytes = "vec", tag = "2")]
    pub sig: Vec<u8>,
    /// The capabilities of the job the gateway wants to send.
    #[prost(message, optional, tag = "3")]
    pub capabilities: Option<Capabilities>,
    /// Asks the orchestrator not to refuse on capacity.
    #[prost(bool, tag = "4")]
    pub ignore_capacity_check: bool,
}

/// What an orchestrator offers: where to send segments, its price, ticket params and an auth token.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OrchestratorInfo {
    /// The service URI segments are posted to (`transcoder + "/segment"`).
    #[prost(string, tag = "1")]
    pub transcoder: String,
    /// Absent off-chain.
    #[prost(message, optional, tag = "2")]
    pub ticket_params: Option<TicketParams>,
    /// Absent off-chain.
    #[prost(message, optional, tag = "3")]
    pub price_info: Option<PriceInfo>,
    /// The orchestrator node's signing address.
    #[prost(bytes = "vec", tag = "4")]
    pub address: Vec<u8>,
    /// What the orchestrator can do.
    #[prost(message, optional, tag = "5")]
    pub capabilities: Option<Capabilities>,
    /// Copied unchanged into every `SegData`.
    #[prost(message, optional, tag = "6")]
    pub auth_token: Option<AuthToken>,
    /// External storage the orchestrator wants used; the gateway leaves storage to the orchestrator.
    #[prost(message, repeated, tag = "32")]
    pub storage: Vec<OsInfo>,
    /// Prices per capability and model (AI); read but unused for transcoding.
    #[prost(message, repeated, tag = "33")]
    pub capabilities_prices: Vec<PriceInfo>,
    /// Other nodes of the same operator.
    #[prost(string, repeated, tag = "34")]
    pub nodes: Vec<String>,
}

/// Ticket parameters. Every field is echoed back byte for byte in a [`Payment`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct TicketParams {
    /// The 20-byte on-chain address tickets are made out to.
    #[prost(bytes = "vec", tag = "1")]
    pub recipient: Vec<u8>,
    /// Big-endian unsigned integer.
    #[prost(bytes = "vec", tag = "2")]
    pub face_value: Vec<u8>,
    /// Big-endian unsigned integer.
    #[prost(bytes = "vec", tag = "3")]
    pub win_prob: Vec<u8>,
    /// 32 bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub recipient_rand_hash: Vec<u8>,
    /// Opaque.
    #[prost(bytes = "vec", tag = "5")]
    pub seed: Vec<u8>,
    /// Big-endian unsigned integer: an L1 block number.
    #[prost(bytes = "vec", tag = "6")]
    pub expiration_block: Vec<u8>,
    /// The round tickets are created in.
    #[prost(message, optional, tag = "7")]
    pub expiration_params: Option<TicketExpirationParams>,
}

/// The creation round of tickets and its block hash.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TicketExpirationParams {
    /// Round number.
    #[prost(int64, tag = "1")]
    pub creation_round: i64,
    /// 32 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub creation_round_block_hash: Vec<u8>,
}

/// One ticket of a payment.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TicketSenderParams {
    /// Nonce within the PM session.
    #[prost(uint32, tag = "1")]
    pub sender_nonce: u32,
    /// 65-byte signature.
    #[prost(bytes = "vec", tag = "2")]
    pub sig: Vec<u8>,
}

/// The `Livepeer-Payment` header.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payment {
    /// Echoed fields 1–6 of the orchestrator's params.
    #[prost(message, optional, tag = "1")]
    pub ticket_params: Option<TicketParams>,
    /// The gateway's 20-byte address.
    #[prost(bytes = "vec", tag = "2")]
    pub sender: Vec<u8>,
    /// Must be present: orchestrators read it without a nil check.
    #[prost(message, optional, tag = "3")]
    pub expiration_params: Option<TicketExpirationParams>,
    /// Tickets in nonce order.
    #[prost(message, repeated, tag = "4")]
    pub ticket_sender_params: Vec<TicketSenderParams>,
    /// The price of the same `OrchestratorInfo` as the params.
    #[prost(message, optional, tag = "5")]
    pub expected_price: Option<PriceInfo>,
}

/// A price: `price_per_unit / pixels_per_unit` wei per pixel.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PriceInfo {
    /// Wei per unit.
    #[prost(int64, tag = "1")]
    pub price_per_unit: i64,
    /// Pixels per unit.
    #[prost(int64, tag = "2")]
    pub pixels_per_unit: i64,
    /// The capability this price is for (AI prices).
    #[prost(uint32, tag = "3")]
    pub capability: u32,
    /// The model id (AI prices).
    #[prost(string, tag = "4")]
    pub constraint: String,
}

/// The orchestrator's session credential, copied unchanged into `SegData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthToken {
    /// Opaque HMAC.
    #[prost(bytes = "vec", tag = "1")]
    pub token: Vec<u8>,
    /// The orchestrator's session id; keys the gateway's credit with it.
    #[prost(string, tag = "2")]
    pub session_id: String,
    /// Unix seconds.
    #[prost(int64, tag = "3")]
    pub expiration: i64,
}

/// Capability bitstrings (§2.3).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Capabilities {
    /// Capability `c` sets bit `c % 64` of word `c / 64`.
    #[prost(uint64, repeated, tag = "1")]
    pub bitstring: Vec<u64>,
    /// Capabilities the other side must have.
    #[prost(uint64, repeated, tag = "2")]
    pub mandatories: Vec<u64>,
    /// Capacity per capability.
    #[prost(map = "uint32, uint32", tag = "3")]
    pub capacities: std::collections::HashMap<u32, u32>,
    /// The node's version string.
    #[prost(string, tag = "4")]
    pub version: String,
    /// Version and model constraints.
    #[prost(message, optional, tag = "5")]
    pub constraints: Option<Constraints>,
}

/// Constraints on a capability set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Constraints {
    /// The lowest acceptable version of the other side.
    #[prost(string, tag = "1")]
    pub min_version: String,
    /// Model constraints per capability.
    #[prost(map = "uint32, message", tag = "2")]
    pub per_capability: std::collections::HashMap<u32, CapabilityConstraints>,
}

/// Model constraints of one capability.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CapabilityConstraints {
    /// By model id.
    #[prost(map = "string, message", tag = "1")]
    pub models: std::collections::HashMap<String, ModelConstraint>,
}

/// One model's state.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelConstraint {
    /// Loaded.
    #[prost(bool, tag = "1")]
    pub warm: bool,
    /// Capacity.
    #[prost(uint32, tag = "2")]
    pub capacity: u32,
    /// Runner version.
    #[prost(string, tag = "3")]
    pub runner_version: String,
    /// Capacity in use.
    #[prost(uint32, tag = "4")]
    pub capacity_in_use: u32,
}

/// The `Livepeer-Segment` header.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SegData {
    /// The gateway's stream id.
    #[prost(bytes = "vec", tag = "1")]
    pub manifest_id: Vec<u8>,
    /// Segment number.
    #[prost(int64, tag = "2")]
    pub seq: i64,
    /// keccak256 of the body.
    #[prost(bytes = "vec", tag = "3")]
    pub hash: Vec<u8>,
    /// Deprecated; go-livepeer sends `"invalid"` so that very old orchestrators fail.
    #[prost(bytes = "vec", tag = "4")]
    pub profiles: Vec<u8>,
    /// personal_sign over keccak256(flatten).
    #[prost(bytes = "vec", tag = "5")]
    pub sig: Vec<u8>,
    /// Milliseconds.
    #[prost(int32, tag = "6")]
    pub duration: i32,
    /// The job's capabilities.
    #[prost(message, optional, tag = "7")]
    pub capabilities: Option<Capabilities>,
    /// Copied from the current `OrchestratorInfo`.
    #[prost(message, optional, tag = "8")]
    pub auth_token: Option<AuthToken>,
    /// Asks for an MPEG-7 signature of each rendition.
    #[prost(bool, tag = "10")]
    pub calc_perceptual_hash: bool,
    /// External storage for the results; left empty.
    #[prost(message, repeated, tag = "32")]
    pub storage: Vec<OsInfo>,
    /// Profiles when every output is MPEG-TS with integer fps, default profile and GOP.
    #[prost(message, repeated, tag = "33")]
    pub full_profiles: Vec<VideoProfile>,
    /// Same conditions with a non-TS output.
    #[prost(message, repeated, tag = "34")]
    pub full_profiles2: Vec<VideoProfile>,
    /// Every other case.
    #[prost(message, repeated, tag = "35")]
    pub full_profiles3: Vec<VideoProfile>,
    /// Clipping (`from`/`to` in ms).
    #[prost(message, optional, tag = "37")]
    pub segment_parameters: Option<SegParameters>,
    /// Asks the orchestrator to restart its transcode session.
    #[prost(bool, tag = "38")]
    pub force_session_reinit: bool,
}

/// A clip of the segment.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SegParameters {
    /// Start in ms.
    #[prost(uint64, tag = "1")]
    pub from: u64,
    /// End in ms.
    #[prost(uint64, tag = "2")]
    pub to: u64,
}

/// One output rendition as the orchestrator's transcoder sees it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VideoProfile {
    /// Always set: the segment signature covers it.
    #[prost(string, tag = "16")]
    pub name: String,
    /// Pixels.
    #[prost(int32, tag = "17")]
    pub width: i32,
    /// Pixels.
    #[prost(int32, tag = "18")]
    pub height: i32,
    /// Bits per second.
    #[prost(int32, tag = "19")]
    pub bitrate: i32,
    /// 0 keeps the source's frame rate.
    #[prost(uint32, tag = "20")]
    pub fps: u32,
    /// [`video_profile::Format`].
    #[prost(int32, tag = "21")]
    pub format: i32,
    /// Frame rate denominator; 0 means 1.
    #[prost(uint32, tag = "22")]
    pub fps_den: u32,
    /// [`video_profile::Profile`].
    #[prost(int32, tag = "23")]
    pub profile: i32,
    /// Milliseconds between keyframes; 0 is the encoder's default, [`video_profile::GOP_INTRA_ONLY`] every frame.
    #[prost(int32, tag = "24")]
    pub gop: i32,
    /// [`video_profile::VideoCodec`].
    #[prost(int32, tag = "25")]
    pub encoder: i32,
    /// Bits per sample.
    #[prost(int32, tag = "26")]
    pub color_depth: i32,
    /// [`video_profile::ChromaSubsampling`].
    #[prost(int32, tag = "27")]
    pub chroma_format: i32,
    /// Constant quality (CRF-like); 0 is unset.
    #[prost(uint32, tag = "28")]
    pub quality: u32,
}

/// Enumerations of [`VideoProfile`].
pub mod video_profile {
    /// The `gop` value asking for intra-only output (lpms `GOPIntraOnly`).
    pub const GOP_INTRA_ONLY: i32 = -1;

    /// Container of the rendition.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
    #[repr(i32)]
    pub enum Format {
        /// MPEG-TS.
        Mpegts = 0,
        /// MP4.
        Mp4 = 1,
    }

    /// H.264 profile.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
    #[repr(i32)]
    pub enum Profile {
        /// The encoder's choice.
        EncoderDefault = 0,
        /// Baseline.
        H264Baseline = 1,
        /// Main.
        H264Main = 2,
        /// High.
        H264High = 3,
        /// High without B-frames.
        H264ConstrainedHigh = 4,
    }

    /// Video codec.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
    #[repr(i32)]
    pub enum VideoCodec {
        /// H.264.
        H264 = 0,
        /// H.265.
        H265 = 1,
        /// VP8.
        Vp8 = 2,
        /// VP9.
        Vp9 = 3,
    }

    /// Chroma subsampling.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
    #[repr(i32)]
    pub enum ChromaSubsampling {
        /// 4:2:0.
        Chroma420 = 0,
        /// 4:2:2.
        Chroma422 = 1,
        /// 4:4:4.
        Chroma444 = 2,
    }
}

/// The body of a `/segment` response after the 200.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TranscodeResult {
    /// The segment's number.
    #[prost(int64, tag = "1")]
    pub seq: i64,
    /// Renditions or an error.
    #[prost(oneof = "transcode_result::Result", tags = "2, 3")]
    pub result: Option<transcode_result::Result>,
    /// Fresh ticket params (same auth token).
    #[prost(message, optional, tag = "16")]
    pub info: Option<OrchestratorInfo>,
}

/// The oneof of [`TranscodeResult`].
pub mod transcode_result {
    /// Renditions or an error.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Result {
        /// Transcoding failed (`OrchestratorBusy`, ffmpeg errors, …).
        #[prost(string, tag = "2")]
        Error(String),
        /// The renditions.
        #[prost(message, tag = "3")]
        Data(super::TranscodeData),
    }
}

/// The renditions of a segment.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TranscodeData {
    /// In the requested profile order.
    #[prost(message, repeated, tag = "1")]
    pub segments: Vec<TranscodedSegmentData>,
    /// The orchestrator's signature over the renditions' hashes.
    #[prost(bytes = "vec", tag = "2")]
    pub sig: Vec<u8>,
}

/// One rendition.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TranscodedSegmentData {
    /// Where to download it (promptly: orchestrators keep a few per rendition).
    #[prost(string, tag = "1")]
    pub url: String,
    /// Output pixels the orchestrator bills.
    #[prost(int64, tag = "2")]
    pub pixels: i64,
    /// MPEG-7 signature URL, when asked for.
    #[prost(string, tag = "3")]
    pub perceptual_hash_url: String,
}

/// The body of a `/payment` response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PaymentResult {
    /// Fresh params.
    #[prost(message, optional, tag = "16")]
    pub info: Option<OrchestratorInfo>,
}

/// Storage offered for results.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OsInfo {
    /// 0 direct, 1 S3, 2 Google.
    #[prost(int32, tag = "1")]
    pub storage_type: i32,
    /// An S3 POST policy.
    #[prost(message, optional, tag = "16")]
    pub s3info: Option<S3OsInfo>,
}

/// An S3 POST policy.
#[derive(Clone, PartialEq, prost::Message)]
pub struct S3OsInfo {
    /// Host.
    #[prost(string, tag = "1")]
    pub host: String,
    /// Key prefix.
    #[prost(string, tag = "2")]
    pub key: String,
    /// Policy.
    #[prost(string, tag = "3")]
    pub policy: String,
    /// Signature.
    #[prost(string, tag = "4")]
    pub signature: String,
    /// Credential.
    #[prost(string, tag = "5")]
    pub credential: String,
    /// Date.
    #[prost(string, tag = "6")]
    pub x_amz_date: String,
}

/// Minimal big-endian bytes of an unsigned integer, as Go's `big.Int.Bytes()` writes them (zero is empty).
pub fn uint_bytes(value: U256) -> Vec<u8> {
    let bytes = value.to_be_bytes::<32>();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(32);
    bytes[first..].to_vec()
}

/// Reads a big-endian unsigned integer, accepting leading zeros and the empty string; `None` beyond 256 bits.
pub fn parse_uint(bytes: &[u8]) -> Option<U256> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let significant = &bytes[first..];
    (significant.len() <= 32).then(|| U256::from_be_slice(significant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn integers_are_minimal_big_endian() {
        assert!(uint_bytes(U256::ZERO).is_empty());
        assert_eq!(uint_bytes(U256::from(0x0102u64)), [1, 2]);
        assert_eq!(parse_uint(&[0, 0, 1, 2]), Some(U256::from(0x0102u64)));
        assert_eq!(parse_uint(&[]), Some(U256::ZERO));
        assert_eq!(parse_uint(&[1; 33]), None);
        let mut padded = vec![0u8; 40];
        padded[39] = 7;
        assert_eq!(parse_uint(&padded), Some(U256::from(7u64)));
    }

    #[test]
    fn field_numbers_match_the_wire_format() {
        // TranscodeResult{seq: 1, error: "x", info: {transcoder: "t"}}: tags 1 (varint), 2 (bytes) and 16 (bytes,
        // a two-byte key 0x82 0x01).
        let result = TranscodeResult {
            seq: 1,
            result: Some(transcode_result::Result::Error("x".into())),
            info: Some(OrchestratorInfo {
                transcoder: "t".into(),
                ..Default::default()
            }),
        };
        assert_eq!(
            result.encode_to_vec(),
            [
                0x08, 0x01, 0x12, 0x01, b'x', 0x82, 0x01, 0x03, 0x0a, 0x01, b't'
            ]
        );
        // VideoProfile.name is field 16 and fullProfiles3 field 35 (key 0x9a 0x02).
        let seg = SegData {
            full_profiles3: vec![VideoProfile {
                name: "a".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            seg.encode_to_vec(),
            [0x9a, 0x02, 0x04, 0x82, 0x01, 0x01, b'a']
        );
    }
}
