//! What the gateway signs to identify itself: the InfoSig of `GetOrchestrator` (§3.2, see
//! [`EthSigner::info_sig`]) and the `SegData` signature (§3.4).

use alloy::primitives::{Address, B256, U256, keccak256};

use crate::pm::signer::{EthSignature, EthSigner, SignatureError, verify_hashed_message_signature};

/// The signed fields of a `SegData`. Storage, duration, capabilities and the auth token are not signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentClaim<'a> {
    /// `SegData.manifestId`: the gateway's stream id.
    pub manifest_id: &'a str,
    /// `SegData.seq`.
    pub seq: u64,
    /// `keccak256` of the segment body.
    pub data_hash: B256,
    /// The rendition names in request order. The orchestrator rebuilds them from the profiles it decodes, so they
    /// must be the names actually sent.
    pub profile_names: &'a [&'a str],
}

impl SegmentClaim<'_> {
    /// go-livepeer's `flatten`: `manifestId ‖ u256(seq) ‖ dataHash ‖ hex(keccak256(name)[0..4])` for each profile,
    /// the profile part as lower-case ASCII hex (8 characters per profile), not raw bytes.
    pub fn flatten(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.manifest_id.len() + 64 + 8 * self.profile_names.len());
        out.extend_from_slice(self.manifest_id.as_bytes());
        out.extend_from_slice(&U256::from(self.seq).to_be_bytes::<32>());
        out.extend_from_slice(self.data_hash.as_slice());
        for name in self.profile_names {
            out.extend_from_slice(alloy::hex::encode(&keccak256(name.as_bytes())[..4]).as_bytes());
        }
        out
    }

    /// `SegData.sig`: personal_sign over `keccak256(flatten)`.
    pub fn sign(&self, signer: &EthSigner) -> Result<EthSignature, SignatureError> {
        signer.sign_hashed_message(&self.flatten())
    }

    /// The orchestrator's check of `SegData.sig`.
    pub fn verify(&self, sender: Address, sig: &[u8]) -> Result<(), SignatureError> {
        verify_hashed_message_signature(sender, &self.flatten(), sig)
    }
}

/// The orchestrator's check of an InfoSig: the message is the sender's EIP-55 address string.
pub fn verify_info_sig(sender: Address, sig: &[u8]) -> Result<(), SignatureError> {
    verify_hashed_message_signature(sender, sender.to_checksum(None).as_bytes(), sig)
}
