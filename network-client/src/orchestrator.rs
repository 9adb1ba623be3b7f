//! One orchestrator as the gateway sees it: who we are to it (the [`Identity`] sent with `GetOrchestrator`,
//! §3.2) and what it offers (an [`Offer`], read from its `OrchestratorInfo` and refreshed from every response,
//! §3.3).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, Bytes};
use url::Url;

use crate::pm::{
    CreationRound, EthSigner, OrchestratorTerms, PriceInfo, SignatureError, TicketParams,
};
use crate::proto;

/// An auth token is refreshed this long before it expires (the last 10% of the orchestrators' 30 minutes).
pub const AUTH_TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(180);

/// How the gateway identifies itself.
#[derive(Clone, Debug)]
pub enum Identity {
    /// go-livepeer's default network: zero address, empty InfoSig, no tickets.
    OffChain,
    /// An ETH account that signs requests and tickets.
    OnChain {
        /// The key.
        signer: EthSigner,
        /// The InfoSig, computed once.
        info_sig: Vec<u8>,
    },
}

impl Identity {
    /// An on-chain identity for `signer`.
    pub fn on_chain(signer: EthSigner) -> Result<Self, SignatureError> {
        let info_sig = signer.info_sig()?.as_bytes().to_vec();
        Ok(Self::OnChain { signer, info_sig })
    }

    /// The address sent as `OrchestratorRequest.address` and `Payment.sender`.
    pub fn address(&self) -> Address {
        match self {
            Self::OffChain => Address::ZERO,
            Self::OnChain { signer, .. } => signer.address(),
        }
    }

    /// The signer, on chain.
    pub fn signer(&self) -> Option<&EthSigner> {
        match self {
            Self::OffChain => None,
            Self::OnChain { signer, .. } => Some(signer),
        }
    }

    /// The `GetOrchestrator` request for a job with `capabilities`.
    pub fn request(&self, capabilities: proto::Capabilities) -> proto::OrchestratorRequest {
        let sig = match self {
            Self::OffChain => Vec::new(),
            Self::OnChain { info_sig, .. } => info_sig.clone(),
        };
        proto::OrchestratorRequest {
            address: self.address().to_vec(),
            sig,
            capabilities: Some(capabilities),
            ignore_capacity_check: false,
        }
    }
}

/// Why an `OrchestratorInfo` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OfferError {
    /// `transcoder` is empty or not a URL.
    #[error("the orchestrator gave no usable transcoder URL ({0:?})")]
    NoTranscoder(String),
    /// No auth token: every modern orchestrator requires one in `SegData`.
    #[error("the orchestrator gave no auth token")]
    NoAuthToken,
    /// A ticket params field has the wrong size.
    #[error("malformed ticket params: {0}")]
    MalformedParams(&'static str),
    /// Ticket params without a price, or the other way round.
    #[error("ticket params and price must come together")]
    PriceWithoutParams,
    /// The orchestrator wants tickets but the gateway runs off-chain.
    #[error("the orchestrator wants payment but the gateway is off-chain")]
    PaymentNeeded,
}

/// What an orchestrator offers, from its latest `OrchestratorInfo`.
#[derive(Clone, Debug)]
pub struct Offer {
    /// Where segments go.
    pub transcoder: Url,
    /// The orchestrator node's signing address.
    pub node_address: Address,
    /// Copied into every `SegData`.
    pub auth_token: proto::AuthToken,
    /// Ticket params and price; `None` from an off-chain orchestrator.
    pub terms: Option<OrchestratorTerms>,
    /// The orchestrator's capabilities, when it sent them.
    pub capabilities: Option<proto::Capabilities>,
}

impl Offer {
    /// Reads an `OrchestratorInfo`. `paying` says whether the gateway can pay (on chain).
    pub fn from_info(info: &proto::OrchestratorInfo, paying: bool) -> Result<Self, OfferError> {
        let transcoder = Url::parse(&info.transcoder)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
            .ok_or_else(|| OfferError::NoTranscoder(info.transcoder.clone()))?;
        let auth_token = info.auth_token.clone().ok_or(OfferError::NoAuthToken)?;
        let terms = match (&info.ticket_params, &info.price_info) {
            (None, None) => None,
            (Some(params), Some(price)) => Some(OrchestratorTerms {
                params: read_ticket_params(params, params.expiration_params.as_ref())?,
                price: PriceInfo {
                    price_per_unit: price.price_per_unit,
                    pixels_per_unit: price.pixels_per_unit,
                },
                session_id: auth_token.session_id.clone(),
            }),
            // An off-chain orchestrator may still quote a price it does not collect.
            (None, Some(_)) if !paying => None,
            _ => return Err(OfferError::PriceWithoutParams),
        };
        if terms.is_some() && !paying {
            return Err(OfferError::PaymentNeeded);
        }
        let node_address = if info.address.len() == 20 {
            Address::from_slice(&info.address)
        } else {
            Address::ZERO
        };
        Ok(Self {
            transcoder,
            node_address,
            auth_token,
            terms,
            capabilities: info.capabilities.clone(),
        })
    }

    /// Whether the auth token is in the last part of its life (or past it) at `now`.
    pub fn auth_token_expiring(&self, now: SystemTime) -> bool {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let refresh_at = self
            .auth_token
            .expiration
            .saturating_sub(AUTH_TOKEN_REFRESH_MARGIN.as_secs() as i64);
        i64::try_from(now).unwrap_or(i64::MAX) >= refresh_at
    }
}

/// Reads ticket params. The creation round comes from `expiration`: the params' own field 7 in an
/// `OrchestratorInfo`, the payment's top-level field 3 on the orchestrator's side.
pub fn read_ticket_params(
    p: &proto::TicketParams,
    expiration: Option<&proto::TicketExpirationParams>,
) -> Result<TicketParams, OfferError> {
    if p.recipient.len() != 20 {
        return Err(OfferError::MalformedParams("recipient must be 20 bytes"));
    }
    if p.recipient_rand_hash.len() != 32 {
        return Err(OfferError::MalformedParams(
            "recipient_rand_hash must be 32 bytes",
        ));
    }
    let uint =
        |bytes: &[u8], what| proto::parse_uint(bytes).ok_or(OfferError::MalformedParams(what));
    let expiration_block = u64::try_from(uint(&p.expiration_block, "expiration_block too large")?)
        .map_err(|_| OfferError::MalformedParams("expiration_block too large"))?;
    let creation_round = match expiration {
        None => CreationRound::default(),
        Some(e) => {
            let round = u64::try_from(e.creation_round)
                .map_err(|_| OfferError::MalformedParams("negative creation_round"))?;
            let block_hash = match e.creation_round_block_hash.len() {
                0 => B256::ZERO,
                32 => B256::from_slice(&e.creation_round_block_hash),
                _ => {
                    return Err(OfferError::MalformedParams(
                        "creation_round_block_hash must be 32 bytes",
                    ));
                }
            };
            CreationRound { round, block_hash }
        }
    };
    Ok(TicketParams {
        recipient: Address::from_slice(&p.recipient),
        face_value: uint(&p.face_value, "face_value beyond 256 bits")?,
        win_prob: uint(&p.win_prob, "win_prob beyond 256 bits")?,
        recipient_rand_hash: B256::from_slice(&p.recipient_rand_hash),
        seed: Bytes::from(p.seed.clone()),
        expiration_block,
        creation_round,
    })
}

/// Ticket params as the protocol carries them, integers as minimal big-endian bytes.
pub fn ticket_params_message(params: &TicketParams) -> proto::TicketParams {
    proto::TicketParams {
        recipient: params.recipient.to_vec(),
        face_value: proto::uint_bytes(params.face_value),
        win_prob: proto::uint_bytes(params.win_prob),
        recipient_rand_hash: params.recipient_rand_hash.to_vec(),
        seed: params.seed.to_vec(),
        expiration_block: proto::uint_bytes(alloy::primitives::U256::from(params.expiration_block)),
        expiration_params: Some(proto::TicketExpirationParams {
            creation_round: params.creation_round.round as i64,
            creation_round_block_hash: params.creation_round.block_hash.to_vec(),
        }),
    }
}

/// The `Livepeer-Payment` message for a payment: the params echoed, `expiration_params` at the top level, the
/// tickets in nonce order and the price of the same info.
pub fn payment_message(payment: &crate::pm::Payment) -> proto::Payment {
    let ticket_params = ticket_params_message(&payment.ticket_params);
    proto::Payment {
        expiration_params: ticket_params.expiration_params.clone(),
        ticket_params: Some(ticket_params),
        sender: payment.sender.to_vec(),
        ticket_sender_params: payment
            .tickets
            .iter()
            .map(|t| proto::TicketSenderParams {
                sender_nonce: t.sender_nonce,
                sig: t.sig.as_bytes().to_vec(),
            })
            .collect(),
        expected_price: Some(proto::PriceInfo {
            price_per_unit: payment.expected_price.price_per_unit,
            pixels_per_unit: payment.expected_price.pixels_per_unit,
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::U256;

    fn info() -> proto::OrchestratorInfo {
        proto::OrchestratorInfo {
            transcoder: "https://127.0.0.1:8935".into(),
            ticket_params: Some(proto::TicketParams {
                recipient: vec![0x11; 20],
                face_value: vec![0, 0x10],
                win_prob: vec![0x01, 0],
                recipient_rand_hash: vec![7; 32],
                seed: vec![1, 2],
                expiration_block: vec![0x01, 0x00],
                expiration_params: Some(proto::TicketExpirationParams {
                    creation_round: 5,
                    creation_round_block_hash: vec![9; 32],
                }),
            }),
            price_info: Some(proto::PriceInfo {
                price_per_unit: 3,
                pixels_per_unit: 2,
                ..Default::default()
            }),
            address: vec![0x22; 20],
            auth_token: Some(proto::AuthToken {
                token: vec![1],
                session_id: "abcd1234".into(),
                expiration: 1_000,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_on_chain_offer_reads_every_field() {
        let offer = Offer::from_info(&info(), true).unwrap();
        let terms = offer.terms.clone().unwrap();
        assert_eq!(terms.params.face_value, U256::from(16));
        assert_eq!(terms.params.win_prob, U256::from(256));
        assert_eq!(terms.params.expiration_block, 256);
        assert_eq!(terms.params.creation_round.round, 5);
        assert_eq!(terms.session_id, "abcd1234");
        assert_eq!(terms.price.pixels_per_unit, 2);
        assert_eq!(offer.node_address, Address::repeat_byte(0x22));
        assert!(offer.auth_token_expiring(UNIX_EPOCH + Duration::from_secs(820)));
        assert!(!offer.auth_token_expiring(UNIX_EPOCH + Duration::from_secs(819)));
    }

    #[test]
    fn unusable_offers_are_refused() {
        assert_eq!(
            Offer::from_info(&info(), false).unwrap_err(),
            OfferError::PaymentNeeded
        );
        let mut i = info();
        i.transcoder.clear();
        assert!(matches!(
            Offer::from_info(&i, true),
            Err(OfferError::NoTranscoder(_))
        ));
        let mut i = info();
        i.auth_token = None;
        assert_eq!(
            Offer::from_info(&i, true).unwrap_err(),
            OfferError::NoAuthToken
        );
        let mut i = info();
        i.ticket_params.as_mut().unwrap().recipient_rand_hash.pop();
        assert!(matches!(
            Offer::from_info(&i, true),
            Err(OfferError::MalformedParams(_))
        ));
        let mut i = info();
        i.price_info = None;
        assert_eq!(
            Offer::from_info(&i, true).unwrap_err(),
            OfferError::PriceWithoutParams
        );
        let mut i = info();
        i.ticket_params = None;
        i.price_info = None;
        assert!(Offer::from_info(&i, false).unwrap().terms.is_none());
    }
}
