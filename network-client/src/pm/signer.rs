//! The gateway's Ethereum key and the two EIP-191 ("personal_sign") flavours the protocol uses (§4.2):
//! over a raw 32-byte ticket hash, and over `keccak256(msg)` for the InfoSig and segment signatures.
//!
//! Verification is as strict as go-livepeer's `crypto/verify.go`: exactly 65 bytes, `v` ∈ {27, 28} and low `s`.
//! A lax verifier would accept the malleated twin `(r, n − s, v ^ 1)` of a signature, which matters because the
//! orchestrator's winner test hashes the signature bytes.

use alloy::primitives::{Address, B256, Signature, U256, keccak256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;

/// Length of an Ethereum signature: `r ‖ s ‖ v`.
pub const SIGNATURE_LEN: usize = 65;

/// Half the secp256k1 group order: the largest `s` a canonical (low-s) signature may carry.
const HALF_ORDER: U256 = alloy::primitives::uint!(
    0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0_U256
);

/// Why a signature was refused or could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature is not 65 bytes long.
    #[error("signature must be {SIGNATURE_LEN} bytes, got {0}")]
    BadLength(usize),
    /// `v` is not 27 or 28 (go-livepeer refuses 0/1 and EIP-155 values).
    #[error("signature v must be 27 or 28, got {0}")]
    BadRecoveryId(u8),
    /// `s` is above n/2: a malleable signature.
    #[error("signature s too high")]
    HighS,
    /// The bytes are not a valid secp256k1 signature for this message (r or s zero or out of range, no point).
    #[error("signature does not recover to a public key")]
    Unrecoverable,
    /// The signature is valid but was made by another key.
    #[error("signature was made by {recovered}, expected {expected}")]
    WrongSigner {
        /// The address the signature belongs to.
        expected: Address,
        /// The address it recovered to.
        recovered: Address,
    },
    /// The private key is not a valid secp256k1 scalar.
    #[error("invalid private key")]
    InvalidPrivateKey,
    /// The signing backend failed; with a local key this does not happen in practice.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A 65-byte `r ‖ s ‖ v` signature with `v` ∈ {27, 28} and low `s`; the constructor checks both.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthSignature([u8; SIGNATURE_LEN]);

impl EthSignature {
    /// Parses and checks a signature received from a peer.
    pub fn parse(bytes: &[u8]) -> Result<Self, SignatureError> {
        let bytes: [u8; SIGNATURE_LEN] = bytes
            .try_into()
            .map_err(|_| SignatureError::BadLength(bytes.len()))?;
        let v = bytes[64];
        if v != 27 && v != 28 {
            return Err(SignatureError::BadRecoveryId(v));
        }
        let s = U256::from_be_slice(&bytes[32..64]);
        if s > HALF_ORDER {
            return Err(SignatureError::HighS);
        }
        Ok(Self(bytes))
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.0
    }

    /// Recovers the signer of `personal_sign(message)` (EIP-191 with the decimal length prefix).
    pub fn recover_personal(&self, message: &[u8]) -> Result<Address, SignatureError> {
        let sig = Signature::from_bytes_and_parity(&self.0[..64], self.0[64] == 28);
        sig.recover_address_from_msg(message)
            .map_err(|_| SignatureError::Unrecoverable)
    }

    /// Checks that `expected` made `personal_sign(message)`.
    pub fn verify_personal(&self, expected: Address, message: &[u8]) -> Result<(), SignatureError> {
        let recovered = self.recover_personal(message)?;
        if recovered != expected {
            return Err(SignatureError::WrongSigner {
                expected,
                recovered,
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for EthSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EthSignature(0x{})", alloy::hex::encode(self.0))
    }
}

/// Checks a ticket signature: personal_sign over the raw 32-byte ticket hash, as `TicketBroker` checks it.
pub fn verify_ticket_signature(
    signer: Address,
    ticket_hash: &B256,
    sig: &[u8],
) -> Result<(), SignatureError> {
    EthSignature::parse(sig)?.verify_personal(signer, ticket_hash.as_slice())
}

/// Checks a go-livepeer `Sign(msg)` signature: personal_sign over `keccak256(msg)` (InfoSig, segment signatures).
pub fn verify_hashed_message_signature(
    signer: Address,
    message: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    EthSignature::parse(sig)?.verify_personal(signer, keccak256(message).as_slice())
}

/// The gateway's signing key. It never prints: `Debug` shows the address only, and the key bytes cannot be read
/// back out of it.
#[derive(Clone)]
pub struct EthSigner {
    inner: PrivateKeySigner,
}

impl EthSigner {
    /// A signer from a 32-byte private key, given as hex with or without `0x`.
    pub fn from_private_key_hex(hex: &str) -> Result<Self, SignatureError> {
        let bytes =
            alloy::hex::decode(hex.trim()).map_err(|_| SignatureError::InvalidPrivateKey)?;
        Self::from_private_key_bytes(&bytes)
    }

    /// A signer from a 32-byte private key.
    pub fn from_private_key_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        let inner =
            PrivateKeySigner::from_slice(bytes).map_err(|_| SignatureError::InvalidPrivateKey)?;
        Ok(Self { inner })
    }

    /// A signer from an alloy local signer (a decrypted keystore, see [`crate::keystore`]).
    pub(crate) fn from_local_signer(inner: PrivateKeySigner) -> Self {
        Self { inner }
    }

    /// A fresh random key (tests, throwaway off-chain identities).
    pub fn random() -> Self {
        Self {
            inner: PrivateKeySigner::random(),
        }
    }

    /// The gateway's address: `OrchestratorRequest.address` and the ticket sender.
    pub fn address(&self) -> Address {
        self.inner.address()
    }

    /// personal_sign over `message` as given.
    fn sign_personal(&self, message: &[u8]) -> Result<EthSignature, SignatureError> {
        let sig = self
            .inner
            .sign_message_sync(message)
            .map_err(|e| SignatureError::Signing(e.to_string()))?;
        // k256 already produces low-s signatures; normalising again keeps that an invariant of this type rather
        // than a property of the backend.
        let sig = sig.normalized_s();
        EthSignature::parse(&sig.as_bytes())
    }

    /// Signs a ticket: personal_sign over the raw 32-byte ticket hash (no extra keccak).
    pub fn sign_ticket_hash(&self, ticket_hash: &B256) -> Result<EthSignature, SignatureError> {
        self.sign_personal(ticket_hash.as_slice())
    }

    /// go-livepeer's `Sign(msg)`: personal_sign over `keccak256(msg)`.
    pub fn sign_hashed_message(&self, message: &[u8]) -> Result<EthSignature, SignatureError> {
        self.sign_personal(keccak256(message).as_slice())
    }

    /// The InfoSig sent with `GetOrchestrator` (§3.2): the signed message is the 42-character EIP-55 checksummed
    /// address string. Lower-case hex would verify against a different digest, so the casing matters.
    pub fn info_sig(&self) -> Result<EthSignature, SignatureError> {
        self.sign_hashed_message(self.address().to_checksum(None).as_bytes())
    }
}

impl std::fmt::Debug for EthSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EthSigner")
            .field("address", &format_args!("{}", self.address()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let signer = EthSigner::random();
        let hash = keccak256(b"x");
        let sig = signer.sign_ticket_hash(&hash).unwrap();
        verify_ticket_signature(signer.address(), &hash, sig.as_bytes()).unwrap();
        assert_eq!(
            verify_ticket_signature(signer.address(), &hash, &sig.as_bytes()[..64]),
            Err(SignatureError::BadLength(64))
        );
        let mut zero_v = *sig.as_bytes();
        zero_v[64] -= 27;
        assert_eq!(
            verify_ticket_signature(signer.address(), &hash, &zero_v),
            Err(SignatureError::BadRecoveryId(zero_v[64]))
        );
    }

    #[test]
    fn debug_does_not_leak_the_key() {
        let key = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
        let signer = EthSigner::from_private_key_hex(key).unwrap();
        let printed = format!("{signer:?} {signer:#?}");
        assert!(
            !printed.contains(key) && !printed.contains(&key[..16]),
            "{printed}"
        );
        assert!(
            printed.contains("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
            "{printed}"
        );
    }

    #[test]
    fn half_order_is_n_over_two() {
        let n = U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .unwrap();
        assert_eq!(HALF_ORDER, n >> 1);
    }
}
