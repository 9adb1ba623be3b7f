//! Probabilistic micropayment (PM) tickets, gateway side (§4 of the protocol reference): the ticket and its hash,
//! the signer, prices and fee estimates, and the per-orchestrator payment session.

pub mod price;
pub mod sender;
pub mod signer;
pub mod ticket;

pub use price::{
    OutputProfile, PriceError, PriceInfo, PricePerPixel, estimate_fee, estimate_pixels,
};
pub use sender::{
    MAX_TICKETS_PER_PARAMS, OrchestratorTerms, Payment, PaymentSession, Reservation,
    SegmentOutcome, SegmentPayment, SenderConfig, SenderError, TicketParams, TicketSenderParams,
    validate_terms,
};
pub use signer::{
    EthSignature, EthSigner, SignatureError, verify_hashed_message_signature,
    verify_ticket_signature,
};
pub use ticket::{AuxData, CreationRound, Ticket, expected_value};
