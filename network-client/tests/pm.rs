//! PM tickets end to end: the known-answer vectors of §6.3 of the protocol reference, the §4.5 worked example, and
//! randomised checks that the orchestrator side accepts what the sender makes and refuses every tampered field.

use std::time::{Duration, Instant};

use alloy::hex;
use alloy::primitives::{Address, B256, Bytes, U256, address, b256, keccak256};
use num_bigint::BigInt;
use num_rational::BigRational;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use studio_network_client::credentials::{SegmentClaim, verify_info_sig};
use studio_network_client::pm::{
    CreationRound, EthSignature, EthSigner, OrchestratorTerms, OutputProfile, Payment,
    PaymentSession, PriceInfo, PricePerPixel, SegmentOutcome, SenderConfig, SenderError,
    SignatureError, Ticket, TicketSenderParams, estimate_fee, estimate_pixels,
    verify_ticket_signature,
};
use studio_test_orchestrator::recipient::{
    Recipient, RecipientError, TicketEconomics, face_value_and_win_prob, is_winner, rat,
    recipient_rand_hash, win_prob, winner_value,
};

const HARDHAT_0_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const HARDHAT_0: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
const HARDHAT_1: Address = address!("70997970C51812dc3A010C7d01b50e0d17dc79C8");
const RAND_HASH_VECTOR: B256 =
    b256!("41b1a0649752af1b28b3dc29a1556eee781e4a4c3a1f7f53f90fa834de098c4d");

fn zero_ticket() -> Ticket {
    Ticket {
        recipient: Address::ZERO,
        sender: Address::ZERO,
        face_value: U256::ZERO,
        win_prob: U256::ZERO,
        sender_nonce: 0,
        recipient_rand_hash: B256::ZERO,
        creation_round: CreationRound::default(),
    }
}

/// §6.3 (a): go-livepeer's `TestHash` vectors.
#[test]
fn vector_ticket_hashes() {
    let cases = [
        (
            Ticket {
                sender_nonce: u32::MAX,
                ..zero_ticket()
            },
            "e1393fc7f6de093780674022f96cb8e3872235167d037c04d554e58c0e63d280",
        ),
        (
            Ticket {
                sender_nonce: 1,
                ..zero_ticket()
            },
            "ce0918ba94518293e9712effbe5fca4f1f431089833a5b8c257cb1e024595f68",
        ),
        (
            Ticket {
                face_value: U256::from(1),
                win_prob: U256::from(500),
                ..zero_ticket()
            },
            "87ef13f2d37e4d5352a01d3c77b8179d80e0887f1953bfabfd0bfd7b0f689ddd",
        ),
        (
            Ticket {
                face_value: U256::from(500),
                win_prob: U256::from(1),
                ..zero_ticket()
            },
            "aa4b35071043587992ac8b9dd1b2cf1d8311130e6458cf0b2342484e21af5f5b",
        ),
        (
            Ticket {
                recipient: address!("73AEd7b5dEb30222fa896f399d46cC99c7BEe57F"),
                ..zero_ticket()
            },
            "81e353ae39046e2b77b9f996abbaeed527fda559b61ef90f299c4499dd508ccc",
        ),
        (
            Ticket {
                recipient_rand_hash: RAND_HASH_VECTOR,
                ..zero_ticket()
            },
            "be5eaf9a49a39540b9bb02f1a21904f61324a29819e2c032824bfaa10c100b17",
        ),
        (
            Ticket {
                creation_round: CreationRound {
                    round: 10,
                    block_hash: RAND_HASH_VECTOR,
                },
                ..zero_ticket()
            },
            "e502907c16036ab3d11b78c5a2e93c20f3d6415c67f91de4ed01348182b3b2e2",
        ),
    ];
    for (i, (ticket, expected)) in cases.iter().enumerate() {
        assert_eq!(
            hex::encode(ticket.hash()),
            *expected,
            "ticket hash vector {i}"
        );
    }
    assert_eq!(cases[0].0.encode_packed().1, 168);
    assert_eq!(cases[6].0.encode_packed().1, 232);
}

/// §6.3 (b): go-livepeer's `TestAuxData` cases.
#[test]
fn vector_aux_data() {
    let hash = b256!("7624778dedc75f8b322b9fa1632a610d40b85e106c7d9bf0e743a9ce291b9c6f");
    let aux =
        |round, block_hash| hex::encode(CreationRound { round, block_hash }.aux_data().as_slice());
    let round5 = format!("{}05", "0".repeat(62));
    assert_eq!(aux(5, hash), format!("{round5}{}", hex::encode(hash)));
    assert_eq!(
        aux(0, hash),
        format!("{}{}", "0".repeat(64), hex::encode(hash))
    );
    assert_eq!(aux(5, B256::ZERO), format!("{round5}{}", "0".repeat(64)));
    assert_eq!(aux(0, B256::ZERO), "");
}

/// §6.3 (c): go-livepeer's `crypto/verify_test.go` ecrecover vector and the strictness around it.
#[test]
fn vector_eip191_recover() {
    let signer = address!("3BadDb1eeE2105893136A3F96c8a963E9C6309d6");
    let msg = b256!("b7da355477356fc4c47fcabcf232dc77a6db9b07b7e48b76261cc55cc8fbabb3");
    let sig = hex::decode(
        "206443228e8f784bc3a122de0d85eb3ebff82d6a79cca26c7eeb907099a6404f\
         6dff57bc6828f28bd6cd073c89d94cf3364204679ed8365fa45b5ee6af19a9841c",
    )
    .unwrap();
    assert_eq!(
        EthSignature::parse(&sig)
            .unwrap()
            .recover_personal(msg.as_slice())
            .unwrap(),
        signer
    );
    verify_ticket_signature(signer, &msg, &sig).unwrap();

    // The malleated twin (r, n − s, v ^ 1) is a valid ECDSA signature of the same key; it must still be refused.
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    let mut high_s = sig.clone();
    high_s[32..64].copy_from_slice(&(n - U256::from_be_slice(&sig[32..64])).to_be_bytes::<32>());
    high_s[64] = if sig[64] == 27 { 28 } else { 27 };
    assert_eq!(
        verify_ticket_signature(signer, &msg, &high_s),
        Err(SignatureError::HighS)
    );
    assert_eq!(SignatureError::HighS.to_string(), "signature s too high");

    assert_eq!(
        verify_ticket_signature(signer, &msg, &sig[..64]),
        Err(SignatureError::BadLength(64))
    );
    let mut long = sig.clone();
    long.push(0);
    assert_eq!(
        verify_ticket_signature(signer, &msg, &long),
        Err(SignatureError::BadLength(66))
    );
    for v in [0u8, 1, 26, 29, 37, 38] {
        let mut bad_v = sig.clone();
        bad_v[64] = v;
        assert_eq!(
            verify_ticket_signature(signer, &msg, &bad_v),
            Err(SignatureError::BadRecoveryId(v)),
            "v = {v}"
        );
    }
    let mut zero_r = sig.clone();
    zero_r[..32].fill(0);
    assert_eq!(
        verify_ticket_signature(signer, &msg, &zero_r),
        Err(SignatureError::Unrecoverable)
    );
    // Flipping v gives a valid signature of someone else.
    let mut other_v = sig.clone();
    other_v[64] = 55 - sig[64];
    assert!(matches!(
        verify_ticket_signature(signer, &msg, &other_v),
        Err(SignatureError::WrongSigner { .. } | SignatureError::Unrecoverable)
    ));
}

/// §6.3 (d): go-livepeer's `TestTicketParams` face value, win probability and recipientRandHash.
#[test]
fn vector_win_prob() {
    let economics = TicketEconomics {
        ticket_ev: U256::from(5),
        redeem_gas: U256::from(10_000),
        gas_price: U256::from(100),
        tx_cost_multiplier: U256::from(100),
        max_float: None,
    };
    let (face_value, win_prob) = face_value_and_win_prob(&economics).unwrap();
    assert_eq!(face_value, U256::from(100_000_000u64));
    assert_eq!(
        win_prob.to_string(),
        "5789604461865809771178549250434395392663499233282028201972879200395660"
    );
    assert_eq!(
        recipient_rand_hash(U256::from(10)),
        b256!("c65a7bb8d6351c1cf70c95a316cc6a92839c986682d98bc35f958f4883f9d2a8")
    );
    assert_eq!(
        studio_test_orchestrator::recipient::win_prob(U256::from(7), U256::from(7)),
        U256::MAX
    );
}

/// §6.3 (e): InfoSig with Hardhat key #0.
#[test]
fn vector_info_sig() {
    let signer = EthSigner::from_private_key_hex(HARDHAT_0_KEY).unwrap();
    assert_eq!(signer.address(), HARDHAT_0);
    let msg = HARDHAT_0.to_checksum(None);
    assert_eq!(msg, "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    assert_eq!(
        keccak256(msg.as_bytes()),
        b256!("db2ec52069cba65d62a560cad9088e7a709d09e7c14b33d740b428038e383e34")
    );
    let sig = signer.info_sig().unwrap();
    assert_eq!(
        hex::encode(sig.as_bytes()),
        "47d66008c2c5b0671b8e7b43b62245ae9c4ba5f6ff7e94328b68eb45090cb108\
         0815dec67a20bdec15ce794c9ce271fa8e6552d6b0976ab7a0b92d5516b32ef31c"
    );
    verify_info_sig(HARDHAT_0, sig.as_bytes()).unwrap();
    assert!(verify_info_sig(HARDHAT_1, sig.as_bytes()).is_err());
    // Signing the lower-case address string, a classic mistake, does not verify.
    let lower = signer
        .sign_hashed_message(format!("{HARDHAT_0:?}").as_bytes())
        .unwrap();
    assert_eq!(format!("{HARDHAT_0:?}"), msg.to_lowercase());
    assert!(matches!(
        verify_info_sig(HARDHAT_0, lower.as_bytes()),
        Err(SignatureError::WrongSigner { .. })
    ));
}

/// §6.3 (e): the ticket from Hardhat #0 to Hardhat #1, its signature and the winner test.
#[test]
fn vector_ticket_end_to_end() {
    let face_value = U256::from(10u64).pow(U256::from(15));
    let wp = win_prob(U256::from(8_000_000_000u64), face_value);
    assert_eq!(
        wp.to_string(),
        "926336713898529563388567880069503262826159877325124512315660680000000000"
    );
    assert_eq!(
        wp,
        U256::from_str_radix(
            "8637bd05af6c69b5a63f9a49c2c1b10fd7e45803cd141a6937d3d7755000",
            16
        )
        .unwrap()
    );
    let rand_bytes: Vec<u8> = (1..=32).collect();
    let rand = U256::from_be_slice(&rand_bytes);
    let rand_hash = recipient_rand_hash(rand);
    assert_eq!(
        rand_hash,
        b256!("52b3f53ff196a28e7d2d01283ef9427070bda64128fb5630b97b6ab17a8ff0a8")
    );
    let ticket = Ticket {
        recipient: HARDHAT_1,
        sender: HARDHAT_0,
        face_value,
        win_prob: wp,
        sender_nonce: 1,
        recipient_rand_hash: rand_hash,
        creation_round: CreationRound {
            round: 3500,
            block_hash: B256::repeat_byte(0xaa),
        },
    };
    assert_eq!(ticket.encode_packed().1, 232);
    let hash = ticket.hash();
    assert_eq!(
        hash,
        b256!("8b8b053f42b102635380d8ba22b2e4db1f791d7fe76192d69216ab390275f631")
    );
    let signer = EthSigner::from_private_key_hex(HARDHAT_0_KEY).unwrap();
    let sig = signer.sign_ticket_hash(&hash).unwrap();
    assert_eq!(
        hex::encode(sig.as_bytes()),
        "fbd78c9a6d73acabb087411d18a40277994d5db388cacf81a95b24260f318973\
         1902d078baf1e7a868d18a2483d0cd5890a87835b0ac05595129f980fe1944011b"
    );
    verify_ticket_signature(HARDHAT_0, &hash, sig.as_bytes()).unwrap();
    let value = hex::encode(winner_value(sig.as_bytes(), rand).to_be_bytes::<32>());
    assert!(
        value.starts_with("db46b76f") && value.ends_with("53b363"),
        "{value}"
    );
    assert!(!is_winner(sig.as_bytes(), rand, wp));
}

/// §6.3 (e): the segment signature and its `flatten`.
#[test]
fn vector_segment_sig() {
    let data_hash = keccak256(b"not-a-real-segment");
    assert_eq!(
        data_hash,
        b256!("d0ea1975639aebc7fd99c8ee26217abaf195186d7a4730bba1582ae594a01df7")
    );
    let names = ["P240p30fps16x9", "P360p30fps16x9"];
    let claim = SegmentClaim {
        manifest_id: "abcdef",
        seq: 5,
        data_hash,
        profile_names: &names,
    };
    let mut expected = hex::decode("616263646566").unwrap();
    expected.extend_from_slice(&U256::from(5).to_be_bytes::<32>());
    expected.extend_from_slice(data_hash.as_slice());
    expected.extend_from_slice(b"c0a6517a93c717e7");
    assert_eq!(claim.flatten(), expected);
    let signer = EthSigner::from_private_key_hex(HARDHAT_0_KEY).unwrap();
    let sig = claim.sign(&signer).unwrap();
    assert_eq!(
        hex::encode(sig.as_bytes()),
        "768f8a5c5ae11215cc39410ca1a4b0fbbf56d6201132311574e045993976300f\
         294f7a291410d0394eb6076c44b22b6dd621020b1dffc2b13f863a1abb4ff94e1b"
    );
    claim.verify(HARDHAT_0, sig.as_bytes()).unwrap();
    let reordered = ["P360p30fps16x9", "P240p30fps16x9"];
    assert!(
        SegmentClaim {
            profile_names: &reordered,
            ..claim
        }
        .verify(HARDHAT_0, sig.as_bytes())
        .is_err()
    );
    assert!(
        SegmentClaim { seq: 6, ..claim }
            .verify(HARDHAT_0, sig.as_bytes())
            .is_err()
    );
}

fn default_profiles() -> [OutputProfile; 2] {
    [
        OutputProfile {
            width: 426,
            height: 240,
            fps: 30,
            fps_den: 0,
        },
        OutputProfile {
            width: 640,
            height: 360,
            fps: 30,
            fps_den: 0,
        },
    ]
}

fn arbitrum_like_recipient(secret: [u8; 32]) -> Recipient {
    Recipient::new(
        secret,
        HARDHAT_1,
        TicketEconomics {
            ticket_ev: U256::from(8_000_000_000u64),
            redeem_gas: U256::from(1_200_000u64),
            // 0.01 gwei: face value 1.2e15.
            gas_price: U256::from(10_000_000u64),
            tx_cost_multiplier: U256::from(100),
            max_float: None,
        },
    )
}

/// §4.5: 1000 wei/px, the two default profiles, a 2 s segment → 3 tickets, 4.04e9 wei carried over; both sides
/// end with the same balance.
#[test]
fn worked_example_of_section_4_5() {
    let price = PriceInfo {
        price_per_unit: 1000,
        pixels_per_unit: 1,
    };
    let profiles = default_profiles();
    let duration = Duration::from_secs(2);
    assert_eq!(
        estimate_pixels(&profiles, duration),
        BigInt::from(19_958_400u64)
    );
    let fee = estimate_fee(
        &profiles,
        duration,
        &PricePerPixel::from_price_info(&price).unwrap(),
    );
    assert_eq!(fee, rat(20_357_568_000));

    let signer = EthSigner::from_private_key_hex(HARDHAT_0_KEY).unwrap();
    let mut orchestrator = arbitrum_like_recipient([7; 32]);
    let terms = orchestrator
        .terms(signer.address(), price, [9; 32], "sess1")
        .unwrap();
    assert_eq!(
        terms.params.face_value,
        U256::from(1_200_000_000_000_000u64)
    );
    let now = Instant::now();
    let mut session =
        PaymentSession::new(signer.clone(), SenderConfig::default(), terms, now).unwrap();
    let paid = session
        .pay_for_segment(&fee, now, Some(orchestrator.last_seen_block))
        .unwrap();
    assert_eq!(paid.payment.tickets.len(), 3);
    assert_eq!(paid.reservation.new_credit().floor(), rat(24_000_000_000));

    assert_eq!(orchestrator.receive_payment(&paid.payment, "sess1"), Ok(3));
    // The orchestrator bills the 60 frames it really made.
    let pixels = (426 * 240 + 640 * 360) * 60;
    orchestrator.debit(signer.address(), "sess1", &price, pixels);
    session.settle(paid.reservation, SegmentOutcome::Delivered { pixels });
    assert_eq!(session.balance().floor(), rat(4_041_600_000));
    assert_eq!(
        *session.balance(),
        orchestrator.balance(signer.address(), "sess1")
    );

    // The next identical segment: (2.0357568e10 − 4.0416e9) / 8e9 rounds up to 3 more tickets, nonces 4 to 6.
    let paid = session.pay_for_segment(&fee, now, None).unwrap();
    assert_eq!(
        paid.payment
            .tickets
            .iter()
            .map(|t| t.sender_nonce)
            .collect::<Vec<_>>(),
        [4, 5, 6]
    );
    assert_eq!(
        *paid.reservation.existing(),
        orchestrator.balance(signer.address(), "sess1")
    );
    session.settle(paid.reservation, SegmentOutcome::NotDelivered);
}

/// A fresh orchestrator + session pair with random economics and price.
fn random_setup(rng: &mut StdRng) -> (EthSigner, Recipient, OrchestratorTerms) {
    let signer = EthSigner::random();
    let mut orchestrator = Recipient::new(
        rng.r#gen(),
        Address::from(rng.r#gen::<[u8; 20]>()),
        TicketEconomics {
            ticket_ev: U256::from(rng.gen_range(1_000_000u64..100_000_000_000)),
            redeem_gas: U256::from(rng.gen_range(100_000u64..2_000_000)),
            gas_price: U256::from(rng.gen_range(1_000_000u64..100_000_000_000)),
            tx_cost_multiplier: U256::from(100),
            max_float: None,
        },
    );
    orchestrator.last_seen_block = rng.gen_range(1..20_000_000);
    orchestrator.creation_round = if rng.gen_bool(0.1) {
        CreationRound::default()
    } else {
        CreationRound {
            round: rng.gen_range(1..10_000),
            block_hash: B256::from(rng.r#gen::<[u8; 32]>()),
        }
    };
    let price = PriceInfo {
        price_per_unit: rng.gen_range(1..5_000),
        pixels_per_unit: rng.gen_range(1..4),
    };
    let terms = orchestrator
        .terms(signer.address(), price, rng.r#gen(), "s")
        .unwrap();
    (signer, orchestrator, terms)
}

/// Every tampering of a field the orchestrator checks, with the error it must give.
fn tamperings(p: &Payment) -> Vec<(&'static str, Payment, RecipientError)> {
    use RecipientError::*;
    let with = |f: &dyn Fn(&mut Payment)| {
        let mut p = p.clone();
        f(&mut p);
        p
    };
    vec![
        (
            "recipient",
            with(&|p| p.ticket_params.recipient = Address::repeat_byte(0x42)),
            RecipientMismatch,
        ),
        (
            "zero sender",
            with(&|p| p.sender = Address::ZERO),
            ZeroSender,
        ),
        (
            "sender",
            with(&|p| p.sender = Address::repeat_byte(0x42)),
            InvalidRecipientRand,
        ),
        (
            "faceValue",
            with(&|p| p.ticket_params.face_value += U256::from(1)),
            InvalidRecipientRand,
        ),
        (
            "winProb",
            with(&|p| p.ticket_params.win_prob -= U256::from(1)),
            InvalidRecipientRand,
        ),
        (
            "recipientRandHash",
            with(&|p| p.ticket_params.recipient_rand_hash.0[31] ^= 1),
            InvalidRecipientRand,
        ),
        (
            "seed",
            with(&|p| p.ticket_params.seed = Bytes::from_static(b"other seed")),
            InvalidRecipientRand,
        ),
        (
            "expirationBlock",
            with(&|p| p.ticket_params.expiration_block += 1),
            InvalidRecipientRand,
        ),
        (
            "creationRound",
            with(&|p| p.ticket_params.creation_round.round += 1),
            InvalidRecipientRand,
        ),
        (
            "auxData hash",
            with(&|p| p.ticket_params.creation_round.block_hash.0[0] ^= 0x80),
            InvalidRecipientRand,
        ),
        (
            "expected_price",
            with(&|p| p.expected_price.price_per_unit += 1),
            InvalidRecipientRand,
        ),
        (
            "nonce",
            with(&|p| p.tickets[0].sender_nonce += 1000),
            BadSignature,
        ),
        (
            "sig byte",
            with(&|p| {
                let mut sig = *p.tickets[0].sig.as_bytes();
                sig[7] ^= 0x01;
                p.tickets[0].sig = EthSignature::parse(&sig).unwrap();
            }),
            BadSignature,
        ),
    ]
}

/// The orchestrator side accepts every payment the sender makes, credits exactly what the sender counts, and
/// refuses each tampered field.
#[test]
fn recipient_accepts_sender_tickets_and_refuses_tampering() {
    let mut rng = StdRng::seed_from_u64(0x5eed_7c4e);
    let mut tickets_checked = 0;
    for round in 0..150 {
        let (signer, mut orchestrator, terms) = random_setup(&mut rng);
        let now = Instant::now();
        let mut session =
            PaymentSession::new(signer.clone(), SenderConfig::default(), terms, now).unwrap();
        let ev = session.terms().params.expected_value();
        // A fee between half a ticket and three tickets: one to three tickets.
        let fee = &ev * BigRational::new(BigInt::from(rng.gen_range(50..300)), BigInt::from(100));
        let paid = session
            .pay_for_segment(&fee, now, Some(orchestrator.last_seen_block))
            .unwrap();
        let n = paid.payment.tickets.len();
        assert!((1..=3).contains(&n), "round {round}: {n} tickets");

        let pristine = orchestrator.clone();
        assert_eq!(
            orchestrator.receive_payment(&paid.payment, "s"),
            Ok(n),
            "round {round}"
        );
        assert_eq!(
            orchestrator.balance(signer.address(), "s"),
            *paid.reservation.new_credit()
        );
        tickets_checked += n;

        for (field, tampered, expected) in tamperings(&paid.payment) {
            let mut o = pristine.clone();
            assert_eq!(
                o.receive_payment(&tampered, "s"),
                Err(expected.clone()),
                "round {round}: {field}"
            );
            if !expected.is_fatal() {
                // Non-fatal errors on the first ticket stop all crediting for the batch.
                assert_eq!(
                    o.balance(signer.address(), "s"),
                    rat(0),
                    "round {round}: {field}"
                );
            }
        }

        // A replayed payment: every nonce was already used.
        assert_eq!(
            orchestrator.receive_payment(&paid.payment, "s"),
            Err(RecipientError::NonceReused)
        );

        // Expired params: the orchestrator refuses, and the sender would not have sent them.
        let mut late = pristine.clone();
        late.last_seen_block = paid.payment.ticket_params.expiration_block;
        assert_eq!(
            late.receive_payment(&paid.payment, "s"),
            Err(RecipientError::ParamsExpired)
        );
        assert!(matches!(
            session.pay_for_segment(
                &fee,
                now,
                Some(paid.payment.ticket_params.expiration_block - 1)
            ),
            Err(SenderError::ParamsExpired { .. })
        ));

        session.settle(paid.reservation, SegmentOutcome::Delivered { pixels: 0 });
    }
    assert!(tickets_checked >= 150);
}

/// Many segments on one params set: nonces never repeat, the orchestrator accepts all 600 and refuses the 601st,
/// and the sender refuses to make it.
#[test]
fn nonce_limit_agrees_on_both_sides() {
    let mut rng = StdRng::seed_from_u64(600);
    let (signer, mut orchestrator, terms) = random_setup(&mut rng);
    let now = Instant::now();
    let mut session =
        PaymentSession::new(signer.clone(), SenderConfig::default(), terms, now).unwrap();
    let ev = session.terms().params.expected_value();
    let mut last = 0;
    while session.last_nonce() < 600 {
        let paid = session
            .pay_for_segment(&(&ev * BigInt::from(2)), now, None)
            .unwrap();
        assert_eq!(paid.payment.tickets.len(), 2);
        for t in &paid.payment.tickets {
            assert_eq!(t.sender_nonce, last + 1);
            last = t.sender_nonce;
        }
        assert_eq!(orchestrator.receive_payment(&paid.payment, "s"), Ok(2));
        // Forfeit the credit so that every segment needs new tickets.
        session.settle(paid.reservation, SegmentOutcome::NotDelivered);
    }
    assert!(matches!(
        session.pay_for_segment(&ev, now, None),
        Err(SenderError::NoncesExhausted { used: 600, .. })
    ));

    // A 601st ticket, signed by hand since the session refuses to make it, is refused by the orchestrator.
    let params = session.terms().params.clone();
    let sig = signer
        .sign_ticket_hash(&params.ticket(signer.address(), 601).hash())
        .unwrap();
    let payment = Payment {
        ticket_params: params,
        sender: signer.address(),
        expected_price: session.terms().price,
        tickets: vec![TicketSenderParams {
            sender_nonce: 601,
            sig,
        }],
    };
    assert_eq!(
        orchestrator.receive_payment(&payment, "s"),
        Err(RecipientError::TooManyValues)
    );
}
