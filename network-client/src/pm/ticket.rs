//! The PM ticket, its `auxData` and its hash (protocol reference §4.1).
//!
//! The hash must match `TicketBroker.getTicketHash` byte for byte: the orchestrator recovers the sender from a
//! signature over it, and the contract recomputes it at redemption.

use alloy::primitives::{Address, B256, U256, keccak256};
use num_bigint::BigInt;
use num_rational::BigRational;

/// Length of `abi.encodePacked(ticket)` with a 64-byte `auxData` (the on-chain form).
pub const PACKED_LEN: usize = 232;

/// Length of the packed encoding without `auxData` (creation round 0 and a zero block hash; tests only).
pub const PACKED_LEN_WITHOUT_AUX: usize = PACKED_LEN - AUX_DATA_LEN;

/// Length of a non-empty `auxData`: `u256(creationRound) ‖ creationRoundBlockHash`.
pub const AUX_DATA_LEN: usize = 64;

/// The round a ticket was created in and that round's L1 block hash. The contract uses them to expire tickets
/// (about two rounds) and the orchestrator mixes them into its recipientRand HMAC, so the gateway copies them
/// unchanged from the orchestrator's ticket params.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CreationRound {
    /// The last initialised round, as the orchestrator reported it.
    pub round: u64,
    /// The L1 block hash of that round.
    pub block_hash: B256,
}

impl CreationRound {
    /// The ticket's `auxData`: 64 bytes, or nothing when both the round and the hash are zero. The empty form only
    /// occurs in go-livepeer's tests (the contract requires 64 bytes), but the hash vectors depend on it.
    pub fn aux_data(&self) -> AuxData {
        if self.round == 0 && self.block_hash.is_zero() {
            return AuxData {
                bytes: [0; AUX_DATA_LEN],
                len: 0,
            };
        }
        let mut bytes = [0; AUX_DATA_LEN];
        bytes[..32].copy_from_slice(&U256::from(self.round).to_be_bytes::<32>());
        bytes[32..].copy_from_slice(self.block_hash.as_slice());
        AuxData {
            bytes,
            len: AUX_DATA_LEN,
        }
    }
}

/// A ticket's `auxData`, kept on the stack because it is built for every ticket.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuxData {
    bytes: [u8; AUX_DATA_LEN],
    len: usize,
}

impl AuxData {
    /// The encoded bytes: empty or 64 long.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Debug for AuxData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuxData(0x{})", alloy::hex::encode(self.as_slice()))
    }
}

/// A probabilistic micropayment ticket as both sides hash it.
///
/// `paramsExpirationBlock` and the price are not part of the ticket hash; they only enter the orchestrator's
/// recipientRand HMAC, so they live in the ticket params, not here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket {
    /// The orchestrator's on-chain address (`ticket_params.recipient`), which may differ from the key it signs
    /// its `OrchestratorInfo` with.
    pub recipient: Address,
    /// The gateway's address: the signer of the ticket and the owner of the TicketBroker deposit.
    pub sender: Address,
    /// What the ticket pays if it wins, in wei.
    pub face_value: U256,
    /// The winning probability scaled to `2^256 - 1`.
    pub win_prob: U256,
    /// A `uint32` on the wire, hashed as a `uint256`.
    pub sender_nonce: u32,
    /// `keccak256(u256(recipientRand))`: commits the orchestrator to its half of the randomness.
    pub recipient_rand_hash: B256,
    /// Source of `auxData`.
    pub creation_round: CreationRound,
}

impl Ticket {
    /// `abi.encodePacked` of the ticket: 232 bytes, or 168 without `auxData`. Returns the buffer and the used length
    /// so that hashing a ticket does not allocate.
    pub fn encode_packed(&self) -> ([u8; PACKED_LEN], usize) {
        let mut out = [0u8; PACKED_LEN];
        out[0..20].copy_from_slice(self.recipient.as_slice());
        out[20..40].copy_from_slice(self.sender.as_slice());
        out[40..72].copy_from_slice(&self.face_value.to_be_bytes::<32>());
        out[72..104].copy_from_slice(&self.win_prob.to_be_bytes::<32>());
        out[104..136].copy_from_slice(&U256::from(self.sender_nonce).to_be_bytes::<32>());
        out[136..168].copy_from_slice(self.recipient_rand_hash.as_slice());
        let aux = self.creation_round.aux_data();
        let aux = aux.as_slice();
        out[168..168 + aux.len()].copy_from_slice(aux);
        (out, PACKED_LEN_WITHOUT_AUX + aux.len())
    }

    /// The ticket hash that the sender signs and the contract recomputes.
    pub fn hash(&self) -> B256 {
        let (buf, len) = self.encode_packed();
        keccak256(&buf[..len])
    }

    /// The ticket's expected value in wei, `faceValue × winProb / (2^256 − 1)`, exact.
    pub fn expected_value(&self) -> BigRational {
        expected_value(self.face_value, self.win_prob)
    }
}

/// `faceValue × winProb / (2^256 − 1)` as an exact rational: both sides' balances are kept in these units, and any
/// rounding would make them drift apart over a long stream.
pub fn expected_value(face_value: U256, win_prob: U256) -> BigRational {
    BigRational::new(
        u256_to_bigint(face_value) * u256_to_bigint(win_prob),
        u256_to_bigint(U256::MAX),
    )
}

/// Converts a `U256` into a `BigInt` without going through strings.
pub(crate) fn u256_to_bigint(v: U256) -> BigInt {
    BigInt::from_bytes_be(num_bigint::Sign::Plus, &v.to_be_bytes::<32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_lengths() {
        let mut t = Ticket {
            recipient: Address::ZERO,
            sender: Address::ZERO,
            face_value: U256::ZERO,
            win_prob: U256::ZERO,
            sender_nonce: 0,
            recipient_rand_hash: B256::ZERO,
            creation_round: CreationRound::default(),
        };
        assert_eq!(t.encode_packed().1, 168);
        t.creation_round.round = 1;
        assert_eq!(t.encode_packed().1, 232);
    }

    #[test]
    fn ev_is_exact() {
        assert_eq!(
            expected_value(U256::MAX, U256::from(7)),
            BigRational::from_integer(BigInt::from(7))
        );
        assert_eq!(
            expected_value(U256::from(3), U256::ZERO),
            BigRational::from_integer(BigInt::from(0))
        );
    }
}
