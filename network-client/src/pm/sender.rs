//! The gateway's side of probabilistic micropayments: one [`PaymentSession`] per orchestrator, which keeps the
//! current ticket params, the nonce of the PM session they open, and the credit balance (§3.3, §4.5, §4.7).
//!
//! The session is a plain state machine: the caller passes the time and the last L1 block it knows of, and wraps
//! the session in whatever lock it needs. Nothing here does I/O.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256};
use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{ToPrimitive, Zero};

use super::price::{PriceError, PriceInfo, PricePerPixel};
use super::signer::{EthSignature, EthSigner, SignatureError};
use super::ticket::{CreationRound, Ticket, expected_value, u256_to_bigint};

/// The orchestrator accepts at most this many nonces per recipientRand (`too many values` after that).
pub const MAX_TICKETS_PER_PARAMS: u32 = 600;

/// The ticket params of one `OrchestratorInfo`. Everything the orchestrator needs to re-derive its recipientRand is
/// here and is echoed unchanged in the payment: the orchestrator keeps no per-params state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TicketParams {
    /// The on-chain address tickets are made out to.
    pub recipient: Address,
    /// Wei paid by a winning ticket.
    pub face_value: U256,
    /// Winning probability scaled to `2^256 − 1`.
    pub win_prob: U256,
    /// The orchestrator's commitment; also the key of the PM session these params open.
    pub recipient_rand_hash: B256,
    /// Opaque to the gateway; echoed byte for byte.
    pub seed: Bytes,
    /// The L1 block after which the orchestrator refuses tickets on these params.
    pub expiration_block: u64,
    /// Copied into every ticket's `auxData` (`ticket_params.expiration_params`).
    pub creation_round: CreationRound,
}

impl TicketParams {
    /// The exact expected value of one ticket on these params, in wei.
    pub fn expected_value(&self) -> BigRational {
        expected_value(self.face_value, self.win_prob)
    }

    /// The ticket `sender` makes with `sender_nonce` on these params.
    pub fn ticket(&self, sender: Address, sender_nonce: u32) -> Ticket {
        Ticket {
            recipient: self.recipient,
            sender,
            face_value: self.face_value,
            win_prob: self.win_prob,
            sender_nonce,
            recipient_rand_hash: self.recipient_rand_hash,
            creation_round: self.creation_round,
        }
    }
}

/// What an `OrchestratorInfo` brings that the payment side needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrchestratorTerms {
    /// `ticket_params`, with `expiration_params` folded into `creation_round`.
    pub params: TicketParams,
    /// `price_info`, echoed as `expected_price`.
    pub price: PriceInfo,
    /// `auth_token.session_id`: the orchestrator keys its balance for us by it.
    pub session_id: String,
}

/// One ticket of a payment, as `Payment.ticket_sender_params` carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TicketSenderParams {
    /// The ticket's nonce within its PM session.
    pub sender_nonce: u32,
    /// personal_sign over the ticket hash.
    pub sig: EthSignature,
}

/// The content of the `Livepeer-Payment` header, before protobuf encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// Echoed params (proto fields 1–6 plus `expiration_params` at the top level).
    pub ticket_params: TicketParams,
    /// The gateway's address.
    pub sender: Address,
    /// The `price_info` of the same `OrchestratorInfo` as the params.
    pub expected_price: PriceInfo,
    /// Signed tickets in nonce order; may be empty when the existing credit covers the segment.
    pub tickets: Vec<TicketSenderParams>,
}

/// Limits the gateway applies to orchestrator-chosen values (go-livepeer's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// Params older than this are refused. Without an L1 block source the gateway cannot see
    /// `expiration_block` approach (about 8 minutes), so it refreshes on age instead.
    pub max_params_age: Duration,
    /// Largest acceptable EV of one ticket, in wei (`-maxTicketEV`, 3e12).
    pub max_ticket_ev: U256,
    /// Largest acceptable EV of one payment, in wei (`-maxTotalEV`, 2e13).
    pub max_total_ev: U256,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            max_params_age: Duration::from_secs(6 * 60),
            max_ticket_ev: U256::from(3_000_000_000_000u64),
            max_total_ev: U256::from(20_000_000_000_000u64),
        }
    }
}

/// Why ticket params were refused or a payment could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// The params name the zero address as recipient.
    #[error("ticket params have a zero recipient")]
    ZeroRecipient,
    /// `expiration_block` is zero: the orchestrator did not set it.
    #[error("ticket params have no expiration block")]
    NoExpirationBlock,
    /// A ticket would be worth at least its face value, which means `win_prob` is out of range.
    #[error("ticket EV {ev} is not below the face value {face_value}")]
    EvNotBelowFaceValue {
        /// The ticket EV, rounded down, in wei.
        ev: BigInt,
        /// The face value in wei.
        face_value: U256,
    },
    /// One ticket would be worth more than the configured maximum.
    #[error("ticket EV {ev} is above the maximum {max}")]
    TicketEvTooHigh {
        /// The ticket EV, rounded down, in wei.
        ev: BigInt,
        /// The configured maximum.
        max: U256,
    },
    /// A free orchestrator (face value 0) must not quote a price.
    #[error("ticket params carry no value but the price is not zero")]
    ValuelessTicketsWithPrice,
    /// The quoted price is unusable.
    #[error(transparent)]
    Price(#[from] PriceError),
    /// The params passed `expiration_block` (with go-livepeer's one-block margin): refresh them.
    #[error(
        "ticket params expired: expiration block {expiration_block}, last seen block {last_seen_block}"
    )]
    ParamsExpired {
        /// The params' expiration block.
        expiration_block: u64,
        /// The latest L1 block the gateway knows of.
        last_seen_block: u64,
    },
    /// The params are older than [`SenderConfig::max_params_age`]: refresh them.
    #[error("ticket params are {age:?} old, the limit is {max:?}")]
    ParamsTooOld {
        /// How long ago they arrived.
        age: Duration,
        /// The configured limit.
        max: Duration,
    },
    /// The segment needs more tickets than the params have nonces left: refresh them.
    #[error(
        "{needed} more tickets would exceed {MAX_TICKETS_PER_PARAMS} per ticket params ({used} used)"
    )]
    NoncesExhausted {
        /// Nonces already used on these params.
        used: u32,
        /// Tickets the segment needs.
        needed: u64,
    },
    /// The segment needs more credit than one payment may carry.
    #[error("payment EV {ev} is above the maximum {max}")]
    PaymentEvTooHigh {
        /// The EV of the tickets the segment needs, rounded down, in wei.
        ev: BigInt,
        /// The configured maximum.
        max: U256,
    },
    /// Credit is needed but the params' tickets are worth nothing.
    #[error("credit is needed but tickets on these params have no value")]
    NoTicketValue,
    /// Signing a ticket failed.
    #[error("signing a ticket failed: {0}")]
    Signing(#[from] SignatureError),
}

/// Checks an orchestrator's terms as go-livepeer's sender does before using them (§4.4, B side). The deposit and
/// reserve checks need a chain view and belong to the caller.
pub fn validate_terms(
    terms: &OrchestratorTerms,
    config: &SenderConfig,
) -> Result<PricePerPixel, SenderError> {
    let price = PricePerPixel::from_price_info(&terms.price)?;
    let params = &terms.params;
    if params.recipient.is_zero() {
        return Err(SenderError::ZeroRecipient);
    }
    if params.expiration_block == 0 {
        return Err(SenderError::NoExpirationBlock);
    }
    if params.face_value.is_zero() {
        // A free orchestrator: no ticket will ever be needed, and a priced one could never be paid.
        if !price.is_zero() {
            return Err(SenderError::ValuelessTicketsWithPrice);
        }
        return Ok(price);
    }
    let ev = params.expected_value();
    if ev >= BigRational::from_integer(u256_to_bigint(params.face_value)) {
        return Err(SenderError::EvNotBelowFaceValue {
            ev: ev.floor().to_integer(),
            face_value: params.face_value,
        });
    }
    if ev > BigRational::from_integer(u256_to_bigint(config.max_ticket_ev)) {
        return Err(SenderError::TicketEvTooHigh {
            ev: ev.floor().to_integer(),
            max: config.max_ticket_ev,
        });
    }
    Ok(price)
}

/// Credit taken out of the balance for one segment, to be settled with [`PaymentSession::settle`] once the
/// orchestrator has answered. Dropping it forfeits the credit, so it is `must_use`.
#[must_use = "settle the reservation or its credit is lost"]
#[derive(Debug)]
pub struct Reservation {
    session_id: String,
    price: PricePerPixel,
    existing: BigRational,
    new_credit: BigRational,
}

impl Reservation {
    /// The credit the balance held before this segment (may be negative).
    pub fn existing(&self) -> &BigRational {
        &self.existing
    }

    /// The EV of the tickets sent with this segment.
    pub fn new_credit(&self) -> &BigRational {
        &self.new_credit
    }
}

/// What became of a segment request, for settling its [`Reservation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentOutcome {
    /// The request failed before the orchestrator could process the payment: only the old credit comes back.
    NotDelivered,
    /// The orchestrator received the payment (and credited our tickets). `pixels` is what it reported billing:
    /// 0 when transcoding failed after the upload.
    Delivered {
        /// Output pixels the orchestrator debits.
        pixels: u64,
    },
}

/// The tickets for one segment and the credit they come from.
#[derive(Debug)]
pub struct SegmentPayment {
    /// What goes into the `Livepeer-Payment` header.
    pub payment: Payment,
    /// What to hand back to [`PaymentSession::settle`].
    pub reservation: Reservation,
}

/// Nonce state of a PM session that is no longer current, remembered so that params seen again never get a
/// nonce twice.
#[derive(Clone, Copy, Debug)]
struct RetiredSession {
    last_nonce: u32,
    first_seen: Instant,
}

/// The payment state the gateway keeps for one orchestrator.
#[derive(Debug)]
pub struct PaymentSession {
    signer: EthSigner,
    config: SenderConfig,
    terms: OrchestratorTerms,
    price: PricePerPixel,
    ev: BigRational,
    params_first_seen: Instant,
    /// The last nonce used on the current params; the next ticket gets `nonce + 1`.
    nonce: u32,
    retired: HashMap<B256, RetiredSession>,
    /// Credit with the orchestrator for `terms.session_id`, in wei. Negative when the orchestrator billed more
    /// than was pre-paid.
    balance: BigRational,
}

impl PaymentSession {
    /// Opens the payment state for an orchestrator from its first `OrchestratorInfo`.
    pub fn new(
        signer: EthSigner,
        config: SenderConfig,
        terms: OrchestratorTerms,
        now: Instant,
    ) -> Result<Self, SenderError> {
        let price = validate_terms(&terms, &config)?;
        let ev = terms.params.expected_value();
        Ok(Self {
            signer,
            config,
            terms,
            price,
            ev,
            params_first_seen: now,
            nonce: 0,
            retired: HashMap::new(),
            balance: BigRational::zero(),
        })
    }

    /// Takes the terms of a newer `OrchestratorInfo` (every response brings one). New params open a new PM session
    /// whose nonces restart; the balance survives unless the orchestrator's session id changed. On an error the
    /// session is unchanged and the orchestrator should be dropped.
    pub fn update(&mut self, terms: OrchestratorTerms, now: Instant) -> Result<(), SenderError> {
        let price = validate_terms(&terms, &self.config)?;
        let old_hash = self.terms.params.recipient_rand_hash;
        let new_hash = terms.params.recipient_rand_hash;
        if new_hash != old_hash {
            self.retired.insert(
                old_hash,
                RetiredSession {
                    last_nonce: self.nonce,
                    first_seen: self.params_first_seen,
                },
            );
            // Params older than the age limit are refused anyway, so their nonces need not be remembered longer.
            let max_age = self.config.max_params_age;
            self.retired
                .retain(|_, r| now.saturating_duration_since(r.first_seen) <= max_age);
            match self.retired.remove(&new_hash) {
                Some(r) => {
                    self.nonce = r.last_nonce;
                    self.params_first_seen = r.first_seen;
                }
                None => {
                    self.nonce = 0;
                    self.params_first_seen = now;
                }
            }
        }
        if terms.session_id != self.terms.session_id {
            self.balance = BigRational::zero();
        }
        self.ev = terms.params.expected_value();
        self.price = price;
        self.terms = terms;
        Ok(())
    }

    /// The current terms.
    pub fn terms(&self) -> &OrchestratorTerms {
        &self.terms
    }

    /// The PM session id: the current `recipientRandHash`.
    pub fn pm_session(&self) -> B256 {
        self.terms.params.recipient_rand_hash
    }

    /// The last nonce used in the current PM session (0 before the first ticket).
    pub fn last_nonce(&self) -> u32 {
        self.nonce
    }

    /// The credit currently held with the orchestrator, excluding reservations in flight.
    pub fn balance(&self) -> &BigRational {
        &self.balance
    }

    /// The exact price per pixel of the current terms.
    pub fn price(&self) -> &PricePerPixel {
        &self.price
    }

    /// Refuses params that are too old or, when the gateway sees L1 blocks, whose expiration block is at most one
    /// block ahead (go-livepeer's sender margin; the orchestrator itself refuses at `expiration_block ≤ last`).
    pub fn check_fresh(
        &self,
        now: Instant,
        last_seen_block: Option<u64>,
    ) -> Result<(), SenderError> {
        let age = now.saturating_duration_since(self.params_first_seen);
        if age > self.config.max_params_age {
            return Err(SenderError::ParamsTooOld {
                age,
                max: self.config.max_params_age,
            });
        }
        let expiration_block = self.terms.params.expiration_block;
        if let Some(last_seen_block) = last_seen_block
            && expiration_block <= last_seen_block.saturating_add(1)
        {
            return Err(SenderError::ParamsExpired {
                expiration_block,
                last_seen_block,
            });
        }
        Ok(())
    }

    /// How many tickets cover `fee` on top of `existing` credit (§4.5 steps 2–3): enough for
    /// `max(fee, ev) − existing`, rounded up to whole tickets.
    pub fn tickets_needed(
        &self,
        fee: &BigRational,
        existing: &BigRational,
    ) -> Result<u64, SenderError> {
        let min_credit = if *fee > self.ev { fee } else { &self.ev };
        if existing >= min_credit {
            return Ok(0);
        }
        if self.ev.is_zero() {
            return Err(SenderError::NoTicketValue);
        }
        let gap = (min_credit - existing) / &self.ev;
        let n = gap.numer().div_ceil(gap.denom());
        Ok(n.to_u64().unwrap_or(u64::MAX))
    }

    /// Makes the payment for one segment whose estimated fee is `fee` (see [`super::price::estimate_fee`]):
    /// takes the whole current credit, signs as many tickets as the gap needs, and returns them with the
    /// reservation to settle afterwards. On an error the credit stays in the balance; nonces already signed stay
    /// used, because the orchestrator may have seen them.
    pub fn pay_for_segment(
        &mut self,
        fee: &BigRational,
        now: Instant,
        last_seen_block: Option<u64>,
    ) -> Result<SegmentPayment, SenderError> {
        self.check_fresh(now, last_seen_block)?;
        let existing = std::mem::take(&mut self.balance);
        match self.sign_tickets(fee, &existing) {
            Ok((tickets, new_credit)) => Ok(SegmentPayment {
                payment: Payment {
                    ticket_params: self.terms.params.clone(),
                    sender: self.signer.address(),
                    expected_price: self.terms.price,
                    tickets,
                },
                reservation: Reservation {
                    session_id: self.terms.session_id.clone(),
                    price: self.price.clone(),
                    existing,
                    new_credit,
                },
            }),
            Err(e) => {
                self.balance += existing;
                Err(e)
            }
        }
    }

    fn sign_tickets(
        &mut self,
        fee: &BigRational,
        existing: &BigRational,
    ) -> Result<(Vec<TicketSenderParams>, BigRational), SenderError> {
        let needed = self.tickets_needed(fee, existing)?;
        let left = MAX_TICKETS_PER_PARAMS - self.nonce;
        if needed > u64::from(left) {
            return Err(SenderError::NoncesExhausted {
                used: self.nonce,
                needed,
            });
        }
        let new_credit = &self.ev * BigInt::from(needed);
        if new_credit > BigRational::from_integer(u256_to_bigint(self.config.max_total_ev)) {
            return Err(SenderError::PaymentEvTooHigh {
                ev: new_credit.floor().to_integer(),
                max: self.config.max_total_ev,
            });
        }
        let sender = self.signer.address();
        let mut tickets = Vec::with_capacity(needed as usize);
        for _ in 0..needed {
            // Incremented before signing and never rolled back: a nonce is spent even if signing or the request
            // fails, since the orchestrator records nonces before it checks anything else that could fail later.
            self.nonce += 1;
            let hash = self.terms.params.ticket(sender, self.nonce).hash();
            let sig = self.signer.sign_ticket_hash(&hash)?;
            tickets.push(TicketSenderParams {
                sender_nonce: self.nonce,
                sig,
            });
        }
        Ok((tickets, new_credit))
    }

    /// Settles a segment's reservation (§4.5 step 5). A reservation made under an orchestrator session id that
    /// has since changed is dropped: the orchestrator reset that balance too.
    pub fn settle(&mut self, reservation: Reservation, outcome: SegmentOutcome) {
        if reservation.session_id != self.terms.session_id {
            return;
        }
        match outcome {
            SegmentOutcome::NotDelivered => self.balance += reservation.existing,
            SegmentOutcome::Delivered { pixels } => {
                self.balance += reservation.existing + reservation.new_credit
                    - reservation.price.cost_of(pixels);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session with default settings on `terms(1, "a")`.
    fn session(now: Instant) -> PaymentSession {
        PaymentSession::new(
            EthSigner::random(),
            SenderConfig::default(),
            terms(1, "a"),
            now,
        )
        .unwrap()
    }

    fn terms(hash: u8, session: &str) -> OrchestratorTerms {
        OrchestratorTerms {
            params: TicketParams {
                recipient: Address::repeat_byte(0x11),
                face_value: U256::from(1_000_000u64),
                // EV = 1000 wei, up to rounding of 1/(2^256-1).
                win_prob: U256::MAX / U256::from(1000),
                recipient_rand_hash: B256::repeat_byte(hash),
                seed: Bytes::from_static(&[1, 2, 3]),
                expiration_block: 100,
                creation_round: CreationRound {
                    round: 1,
                    block_hash: B256::repeat_byte(9),
                },
            },
            price: PriceInfo {
                price_per_unit: 1,
                pixels_per_unit: 1,
            },
            session_id: session.to_owned(),
        }
    }

    fn rat(n: i64) -> BigRational {
        BigRational::from_integer(BigInt::from(n))
    }

    #[test]
    fn nonces_start_at_one_and_restart_with_new_params() {
        let now = Instant::now();
        let mut s = session(now);
        let p = s.pay_for_segment(&rat(2500), now, None).unwrap();
        let nonces: Vec<u32> = p.payment.tickets.iter().map(|t| t.sender_nonce).collect();
        assert_eq!(nonces, [1, 2, 3]);
        s.settle(p.reservation, SegmentOutcome::Delivered { pixels: 2500 });
        s.update(terms(2, "a"), now).unwrap();
        assert_eq!(s.last_nonce(), 0);
        let p = s.pay_for_segment(&rat(1), now, None).unwrap();
        // About 500 wei carried over, but a payment always covers at least one ticket's EV: one more ticket.
        assert_eq!(p.payment.tickets.len(), 1);
        assert_eq!(p.payment.tickets[0].sender_nonce, 1);
        s.settle(p.reservation, SegmentOutcome::NotDelivered);
    }

    #[test]
    fn params_seen_again_keep_their_nonces() {
        let now = Instant::now();
        let mut s = session(now);
        let p = s.pay_for_segment(&rat(2500), now, None).unwrap();
        s.settle(p.reservation, SegmentOutcome::NotDelivered);
        s.update(terms(2, "a"), now).unwrap();
        s.update(terms(1, "a"), now).unwrap();
        assert_eq!(s.last_nonce(), 3);
        s.update(terms(1, "a"), now).unwrap();
        assert_eq!(s.last_nonce(), 3);
    }

    #[test]
    fn balance_resets_only_on_a_new_session_id() {
        let now = Instant::now();
        let mut s = session(now);
        let p = s.pay_for_segment(&rat(2500), now, None).unwrap();
        let credit = p.reservation.new_credit().clone();
        s.settle(p.reservation, SegmentOutcome::Delivered { pixels: 0 });
        assert_eq!(*s.balance(), credit);
        s.update(terms(2, "a"), now).unwrap();
        assert_eq!(*s.balance(), credit);
        let p = s.pay_for_segment(&rat(1), now, None).unwrap();
        assert!(
            p.payment.tickets.is_empty(),
            "existing credit covers the segment"
        );
        s.update(terms(3, "b"), now).unwrap();
        assert!(s.balance().is_zero());
        // A reservation from the old orchestrator session does not leak into the new one.
        s.settle(p.reservation, SegmentOutcome::NotDelivered);
        assert!(s.balance().is_zero());
    }

    #[test]
    fn at_most_600_nonces_per_params() {
        let now = Instant::now();
        let mut s = session(now);
        s.nonce = 598;
        match s.pay_for_segment(&rat(2500), now, None) {
            Err(SenderError::NoncesExhausted {
                used: 598,
                needed: 3,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(s.balance().is_zero());
        let p = s.pay_for_segment(&rat(1500), now, None).unwrap();
        assert_eq!(
            p.payment
                .tickets
                .iter()
                .map(|t| t.sender_nonce)
                .collect::<Vec<_>>(),
            [599, 600]
        );
        s.settle(p.reservation, SegmentOutcome::NotDelivered);
        assert!(matches!(
            s.pay_for_segment(&rat(1), now, None),
            Err(SenderError::NoncesExhausted { .. })
        ));
    }

    #[test]
    fn stale_params_are_refused() {
        let now = Instant::now();
        let config = SenderConfig {
            max_params_age: Duration::from_secs(60),
            ..SenderConfig::default()
        };
        let mut s = PaymentSession::new(EthSigner::random(), config, terms(1, "a"), now).unwrap();
        s.check_fresh(now + Duration::from_secs(60), Some(98))
            .unwrap();
        assert!(matches!(
            s.pay_for_segment(&rat(1), now + Duration::from_secs(61), None),
            Err(SenderError::ParamsTooOld { .. })
        ));
        assert!(matches!(
            s.pay_for_segment(&rat(1), now, Some(99)),
            Err(SenderError::ParamsExpired {
                expiration_block: 100,
                last_seen_block: 99
            })
        ));
        assert_eq!(s.last_nonce(), 0, "a refused payment spends no nonce");
        s.update(terms(2, "a"), now + Duration::from_secs(61))
            .unwrap();
        s.check_fresh(now + Duration::from_secs(61), None).unwrap();
    }

    #[test]
    fn bad_terms_are_refused() {
        let cfg = SenderConfig::default();
        let mut t = terms(1, "a");
        t.params.expiration_block = 0;
        assert!(matches!(
            validate_terms(&t, &cfg),
            Err(SenderError::NoExpirationBlock)
        ));
        let mut t = terms(1, "a");
        t.params.recipient = Address::ZERO;
        assert!(matches!(
            validate_terms(&t, &cfg),
            Err(SenderError::ZeroRecipient)
        ));
        let mut t = terms(1, "a");
        t.params.win_prob = U256::MAX;
        assert!(matches!(
            validate_terms(&t, &cfg),
            Err(SenderError::EvNotBelowFaceValue { .. })
        ));
        let mut t = terms(1, "a");
        t.params.face_value = U256::from(10u64).pow(U256::from(18));
        t.params.win_prob = U256::MAX / U256::from(100_000);
        assert!(matches!(
            validate_terms(&t, &cfg),
            Err(SenderError::TicketEvTooHigh { .. })
        ));
        let mut t = terms(1, "a");
        t.params.face_value = U256::ZERO;
        t.params.win_prob = U256::ZERO;
        assert!(matches!(
            validate_terms(&t, &cfg),
            Err(SenderError::ValuelessTicketsWithPrice)
        ));
        t.price.price_per_unit = 0;
        validate_terms(&t, &cfg).unwrap();
        let mut t = terms(1, "a");
        t.price.pixels_per_unit = 0;
        assert!(matches!(
            validate_terms(&t, &cfg),
            Err(SenderError::Price(PriceError::BadPixelsPerUnit(0)))
        ));
    }

    #[test]
    fn payment_ev_is_capped() {
        let now = Instant::now();
        let config = SenderConfig {
            max_total_ev: U256::from(2500),
            ..SenderConfig::default()
        };
        let mut s = PaymentSession::new(EthSigner::random(), config, terms(1, "a"), now).unwrap();
        assert!(matches!(
            s.pay_for_segment(&rat(2500), now, None),
            Err(SenderError::PaymentEvTooHigh { .. })
        ));
        let p = s.pay_for_segment(&rat(1500), now, None).unwrap();
        assert_eq!(p.payment.tickets.len(), 2);
        s.settle(p.reservation, SegmentOutcome::NotDelivered);
    }

    #[test]
    fn negative_balance_buys_more_tickets() {
        let now = Instant::now();
        let mut s = session(now);
        let p = s.pay_for_segment(&rat(900), now, None).unwrap();
        assert_eq!(p.payment.tickets.len(), 1);
        // The orchestrator billed 2500 px at 1 wei: about 1500 wei more than the ticket's EV.
        s.settle(p.reservation, SegmentOutcome::Delivered { pixels: 2500 });
        assert!(*s.balance() < rat(-1499));
        let p = s.pay_for_segment(&rat(900), now, None).unwrap();
        assert_eq!(p.payment.tickets.len(), 3);
        s.settle(p.reservation, SegmentOutcome::NotDelivered);
    }
}
