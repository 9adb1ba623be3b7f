//! Ticket creation and signing time (goal: under 1 ms per segment). A plain timing loop rather than a bench
//! framework, to keep the dependency set small; run with `cargo bench -p studio-network-client`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256};
use studio_network_client::pm::{
    CreationRound, EthSigner, OrchestratorTerms, OutputProfile, PaymentSession, PriceInfo,
    PricePerPixel, SegmentOutcome, SenderConfig, TicketParams, estimate_fee,
};

const ITERATIONS: u32 = 2_000;

fn report(what: &str, total: Duration, n: u32) {
    println!(
        "{what:<48} {:>9.1} µs",
        total.as_secs_f64() * 1e6 / f64::from(n)
    );
}

fn main() {
    let signer = EthSigner::from_private_key_hex(
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    )
    .expect("valid key");
    let face_value = U256::from(1_200_000_000_000_000u64);
    let params = TicketParams {
        recipient: Address::repeat_byte(0x70),
        face_value,
        win_prob: U256::from(8_000_000_000u64) * U256::MAX.div_ceil(face_value),
        recipient_rand_hash: B256::repeat_byte(0x52),
        seed: Bytes::from(vec![9u8; 32]),
        expiration_block: 1_000_040,
        creation_round: CreationRound {
            round: 3500,
            block_hash: B256::repeat_byte(0xaa),
        },
    };
    let price = PriceInfo {
        price_per_unit: 1000,
        pixels_per_unit: 1,
    };
    let profiles = [
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
    ];

    // Warm up caches and lazily initialised tables.
    for nonce in 0..50 {
        black_box(
            signer
                .sign_ticket_hash(&params.ticket(signer.address(), nonce).hash())
                .expect("sign"),
        );
    }

    let start = Instant::now();
    for nonce in 0..ITERATIONS {
        black_box(params.ticket(signer.address(), nonce).hash());
    }
    report("ticket hash (232-byte keccak)", start.elapsed(), ITERATIONS);

    let start = Instant::now();
    for nonce in 0..ITERATIONS {
        let hash = params.ticket(signer.address(), nonce).hash();
        black_box(signer.sign_ticket_hash(&hash).expect("sign"));
    }
    report("ticket hash + sign", start.elapsed(), ITERATIONS);

    // A 2 s segment at 1000 wei/px with the two default profiles needs 3 tickets of EV 8e9 (§4.5). Every response
    // brings new params, so each segment also takes new terms; the clock advances 2 s per segment so that the
    // session remembers retired params for 6 minutes (180 segments), as a live stream's would.
    let price_per_pixel = PricePerPixel::from_price_info(&price).expect("valid price");
    let t0 = Instant::now();
    let terms = |i: u32| OrchestratorTerms {
        params: TicketParams {
            recipient_rand_hash: B256::from(U256::from(i)),
            ..params.clone()
        },
        price,
        session_id: "bench".to_owned(),
    };
    let mut session =
        PaymentSession::new(signer.clone(), SenderConfig::default(), terms(0), t0).expect("terms");
    let (mut pay_time, mut update_time, mut tickets) = (Duration::ZERO, Duration::ZERO, 0);
    for i in 0..ITERATIONS {
        let now = t0 + Duration::from_secs(2 * u64::from(i));
        let start = Instant::now();
        let fee = estimate_fee(&profiles, Duration::from_secs(2), &price_per_pixel);
        let paid = session.pay_for_segment(&fee, now, None).expect("payment");
        tickets += paid.payment.tickets.len();
        session.settle(black_box(paid).reservation, SegmentOutcome::NotDelivered);
        pay_time += start.elapsed();
        let start = Instant::now();
        session.update(terms(i + 1), now).expect("terms");
        update_time += start.elapsed();
    }
    assert_eq!(tickets, 3 * ITERATIONS as usize);
    report(
        "segment: fee estimate + 3 signed tickets + settle",
        pay_time,
        ITERATIONS,
    );
    report(
        "taking new params (every response)",
        update_time,
        ITERATIONS,
    );
    report("segment total", pay_time + update_time, ITERATIONS);
}
