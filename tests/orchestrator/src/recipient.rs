//! The orchestrator's side of PM tickets (§4.3): ticket params and their recipientRand HMAC, and the checks an
//! orchestrator runs on each received ticket. Written from the protocol rules, independently of the sender code
//! it tests; it only shares the ticket hash and signature check, which the known-answer vectors pin separately.

use std::collections::{HashMap, HashSet};

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use hmac::{Hmac, Mac};
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::Zero;
use sha2::Sha256;
use studio_network_client::pm::{
    CreationRound, EthSignature, OrchestratorTerms, Payment, PriceInfo, PricePerPixel, Ticket,
    TicketParams, verify_ticket_signature,
};

/// Nonces the orchestrator accepts per recipientRand.
pub const MAX_NONCES: usize = 600;

/// How many L1 blocks ticket params stay valid.
pub const PARAMS_VALIDITY_BLOCKS: u64 = 40;

/// Why the orchestrator refused a ticket or could not make params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientError {
    /// Fatal: the ticket is not made out to this orchestrator.
    RecipientMismatch,
    /// Fatal: the sender is the zero address.
    ZeroSender,
    /// Fatal: the echoed fields do not re-derive the committed recipientRand.
    InvalidRecipientRand,
    /// Fatal: `expected_price` is unusable.
    BadPrice,
    /// Non-fatal: the signature does not recover to the sender.
    BadSignature,
    /// Non-fatal: the `(recipientRand, nonce)` pair was used before.
    NonceReused,
    /// Non-fatal: 600 nonces were already used with this recipientRand (`too many values`).
    TooManyValues,
    /// Non-fatal: `expiration_block ≤ last seen block`.
    ParamsExpired,
    /// Making params: the face value cannot cover the ticket EV or the redemption cost.
    InsufficientSenderReserve,
}

impl RecipientError {
    /// Fatal errors abort the batch at once.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::RecipientMismatch
                | Self::ZeroSender
                | Self::InvalidRecipientRand
                | Self::BadPrice
        )
    }
}

/// What sets a ticket's face value: the redemption gas cost times a safety multiplier.
#[derive(Debug, Clone)]
pub struct TicketEconomics {
    /// The EV the orchestrator wants per ticket (`-ticketEV`).
    pub ticket_ev: U256,
    /// Gas to redeem a winning ticket (1,200,000 on Arbitrum).
    pub redeem_gas: U256,
    /// Current gas price in wei.
    pub gas_price: U256,
    /// `txCostMultiplier` (100).
    pub tx_cost_multiplier: U256,
    /// The sender's `maxFloat`, when known.
    pub max_float: Option<U256>,
}

/// The face value and win probability of §4.3.
pub fn face_value_and_win_prob(e: &TicketEconomics) -> Result<(U256, U256), RecipientError> {
    let tx_cost = e.redeem_gas * e.gas_price;
    let mut face_value = tx_cost * e.tx_cost_multiplier;
    if face_value < e.ticket_ev {
        face_value = e.ticket_ev * U256::from(100);
    }
    if let Some(max_float) = e.max_float {
        face_value = face_value.min(max_float);
    }
    let three_gwei_cost = e.redeem_gas * U256::from(3_000_000_000u64);
    if face_value < e.ticket_ev || (face_value < tx_cost && face_value < three_gwei_cost) {
        return Err(RecipientError::InsufficientSenderReserve);
    }
    Ok((face_value, win_prob(e.ticket_ev, face_value)))
}

/// `EV × ceil((2^256 − 1) / faceValue)`, or `2^256 − 1` when the face value equals the EV.
pub fn win_prob(ev: U256, face_value: U256) -> U256 {
    if face_value == ev {
        return U256::MAX;
    }
    ev * U256::MAX.div_ceil(face_value)
}

/// `keccak256(u256(recipientRand))`.
pub fn recipient_rand_hash(recipient_rand: U256) -> B256 {
    keccak256(recipient_rand.to_be_bytes::<32>())
}

/// Go's `big.Int.Bytes()`: big-endian without leading zeros (empty for zero).
fn minimal(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// An orchestrator's ticket-receiving state.
#[derive(Debug, Clone)]
pub struct Recipient {
    secret: [u8; 32],
    /// The on-chain address tickets must be made out to.
    pub address: Address,
    pub economics: TicketEconomics,
    /// The latest L1 block the orchestrator has seen.
    pub last_seen_block: u64,
    /// The last initialised round and its block hash.
    pub creation_round: CreationRound,
    nonces: HashMap<U256, HashSet<u32>>,
    balances: HashMap<(Address, String), BigRational>,
    /// Winning tickets queued for redemption, with their signature and recipientRand.
    pub winners: Vec<(Ticket, EthSignature, U256)>,
}

impl Recipient {
    pub fn new(secret: [u8; 32], address: Address, economics: TicketEconomics) -> Self {
        Self {
            secret,
            address,
            economics,
            last_seen_block: 1_000,
            creation_round: CreationRound {
                round: 3500,
                block_hash: B256::repeat_byte(0xaa),
            },
            nonces: HashMap::new(),
            balances: HashMap::new(),
            winners: Vec::new(),
        }
    }

    /// `HMAC-SHA256(secret, seed ‖ sender ‖ faceValue ‖ winProb ‖ expirationBlock ‖ price.num ‖ price.den ‖ auxData)`.
    pub fn recipient_rand(
        &self,
        sender: Address,
        params: &TicketParams,
        price: &PricePerPixel,
    ) -> U256 {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(minimal(&params.seed));
        mac.update(sender.as_slice());
        mac.update(minimal(&params.face_value.to_be_bytes::<32>()));
        mac.update(minimal(&params.win_prob.to_be_bytes::<32>()));
        mac.update(minimal(&params.expiration_block.to_be_bytes()));
        mac.update(minimal(&price.as_rational().numer().to_bytes_be().1));
        mac.update(minimal(&price.as_rational().denom().to_bytes_be().1));
        mac.update(params.creation_round.aux_data().as_slice());
        U256::from_be_slice(&mac.finalize().into_bytes())
    }

    /// The `ticket_params` and price of a fresh `OrchestratorInfo` for `sender`.
    pub fn terms(
        &self,
        sender: Address,
        price: PriceInfo,
        seed: [u8; 32],
        session_id: &str,
    ) -> Result<OrchestratorTerms, RecipientError> {
        let price_rat =
            PricePerPixel::from_price_info(&price).map_err(|_| RecipientError::BadPrice)?;
        let (face_value, win_prob) = if price_rat.is_zero() {
            (U256::ZERO, U256::ZERO)
        } else {
            face_value_and_win_prob(&self.economics)?
        };
        let mut params = TicketParams {
            recipient: self.address,
            face_value,
            win_prob,
            recipient_rand_hash: B256::ZERO,
            seed: Bytes::copy_from_slice(&seed),
            expiration_block: self.last_seen_block + PARAMS_VALIDITY_BLOCKS,
            creation_round: self.creation_round,
        };
        params.recipient_rand_hash =
            recipient_rand_hash(self.recipient_rand(sender, &params, &price_rat));
        Ok(OrchestratorTerms {
            params,
            price,
            session_id: session_id.to_owned(),
        })
    }

    /// Processes a payment as `ProcessPayment` does: a fatal error aborts at once (earlier tickets stay credited);
    /// after a non-fatal error the remaining tickets are still received but no longer credited, and the first
    /// error is returned. Returns the number of credited tickets.
    pub fn receive_payment(
        &mut self,
        payment: &Payment,
        balance_key: &str,
    ) -> Result<usize, RecipientError> {
        let price = PricePerPixel::from_price_info(&payment.expected_price)
            .map_err(|_| RecipientError::BadPrice)?;
        let params = &payment.ticket_params;
        let mut credited = 0;
        let mut first_error = None;
        for t in &payment.tickets {
            if params.recipient != self.address {
                return Err(RecipientError::RecipientMismatch);
            }
            if payment.sender.is_zero() {
                return Err(RecipientError::ZeroSender);
            }
            let rand = self.recipient_rand(payment.sender, params, &price);
            if recipient_rand_hash(rand) != params.recipient_rand_hash {
                return Err(RecipientError::InvalidRecipientRand);
            }
            match self.receive_ticket(payment, rand, t.sender_nonce, t.sig) {
                Ok(ev) if first_error.is_none() => {
                    *self
                        .balances
                        .entry((payment.sender, balance_key.to_owned()))
                        .or_default() += ev;
                    credited += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(credited),
        }
    }

    fn receive_ticket(
        &mut self,
        payment: &Payment,
        rand: U256,
        nonce: u32,
        sig: EthSignature,
    ) -> Result<BigRational, RecipientError> {
        let ticket = payment.ticket_params.ticket(payment.sender, nonce);
        verify_ticket_signature(payment.sender, &ticket.hash(), sig.as_bytes())
            .map_err(|_| RecipientError::BadSignature)?;
        // The nonce is recorded before the expiry check, which is why a sender must never reuse one.
        let seen = self.nonces.entry(rand).or_default();
        if seen.contains(&nonce) {
            return Err(RecipientError::NonceReused);
        }
        if seen.len() >= MAX_NONCES {
            return Err(RecipientError::TooManyValues);
        }
        seen.insert(nonce);
        if payment.ticket_params.expiration_block <= self.last_seen_block {
            return Err(RecipientError::ParamsExpired);
        }
        if is_winner(sig.as_bytes(), rand, ticket.win_prob) {
            self.winners.push((ticket, sig, rand));
        }
        Ok(ticket.expected_value())
    }

    /// Debits the segment's real pixels at the payment's price.
    pub fn debit(&mut self, sender: Address, balance_key: &str, price: &PriceInfo, pixels: u64) {
        let price =
            PricePerPixel::from_price_info(price).expect("a price the payment already passed");
        *self
            .balances
            .entry((sender, balance_key.to_owned()))
            .or_default() -= price.cost_of(pixels);
    }

    /// The credit `sender` has under `balance_key`.
    pub fn balance(&self, sender: Address, balance_key: &str) -> BigRational {
        self.balances
            .get(&(sender, balance_key.to_owned()))
            .cloned()
            .unwrap_or_else(BigRational::zero)
    }
}

/// `keccak256(sig ‖ u256(recipientRand))` as a number.
pub fn winner_value(sig: &[u8], recipient_rand: U256) -> U256 {
    let mut buf = Vec::with_capacity(sig.len() + 32);
    buf.extend_from_slice(sig);
    buf.extend_from_slice(&recipient_rand.to_be_bytes::<32>());
    U256::from_be_bytes(keccak256(&buf).0)
}

/// The winner test: `keccak256(sig ‖ u256(recipientRand)) < winProb`.
pub fn is_winner(sig: &[u8], recipient_rand: U256, win_prob: U256) -> bool {
    winner_value(sig, recipient_rand) < win_prob
}

/// An exact integer as a rational, for comparisons in tests.
pub fn rat(n: u64) -> BigRational {
    BigRational::from_integer(BigInt::from(n))
}
