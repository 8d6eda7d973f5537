//! Hostile bundles and statements give errors, never panics: seeded random mutations of a
//! valid bundle, and of a valid statement that is then properly signed (so the statement
//! and manifest parsers, not just the signature check, see the damage).

mod common;

use common::{TestResult, fixture_model, python_bundle, test_public_key, test_signing_key};
use nnguard_signing::dsse::IN_TOTO_PAYLOAD_TYPE;
use nnguard_signing::{
    Bundle, MODEL_SIGNING_PREDICATE_TYPE, Manifest, NoProgress, Statement, VerifyOptions,
    verify_model,
};

/// xorshift64*: a tiny deterministic generator, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"-1",
    b"1e999",
    b"0.5",
    b"\\u0000",
    b"../",
    b"/",
    b":0:1",
    b"sha256",
    b"\xff",
    b"",
    b"true",
    b"\"files\"",
    b"\"shards\"",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.truncate(at),
            2 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, piece.iter().copied());
            }
            _ => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
        }
    }
    out
}

#[test]
fn mutated_bundles_are_rejected_without_panicking() -> TestResult {
    let original = python_bundle("model.sig")?.to_json()?.into_bytes();
    let key = test_public_key()?;
    let mut rng = Rng(0x5eed_0001);
    let mut accepted = 0;
    for _ in 0..3000 {
        let bytes = mutate(&mut rng, &original);
        let Ok(bundle) = Bundle::from_json(&bytes) else {
            continue;
        };
        let Ok(payload) = bundle.verify_in_toto(&key) else {
            continue;
        };
        let Ok(statement) = Statement::from_payload(&payload, MODEL_SIGNING_PREDICATE_TYPE) else {
            continue;
        };
        if Manifest::from_statement(&statement).is_ok() {
            accepted += 1;
        }
    }
    // Only mutations of unsigned fields that nothing checks (such as `keyid`) may pass.
    assert!(
        accepted < 300,
        "{accepted} of 3000 mutated bundles verified"
    );
    Ok(())
}

#[test]
fn mutated_signed_statements_are_rejected_without_panicking() -> TestResult {
    let payload = python_bundle("model.sig")?.verify_in_toto(&test_public_key()?)?;
    let signer = test_signing_key()?;
    let key = test_public_key()?;
    let model = fixture_model();
    let mut rng = Rng(0x5eed_0002);
    let (mut verified, mut rejected) = (0, 0);
    for _ in 0..400 {
        let mutated = mutate(&mut rng, &payload);
        let bundle = Bundle::sign(IN_TOTO_PAYLOAD_TYPE, &mutated, &signer);
        match verify_model(
            &model,
            &bundle,
            &key,
            &VerifyOptions::default(),
            &NoProgress,
        ) {
            Ok(v) if v.is_verified() => verified += 1,
            _ => rejected += 1,
        }
    }
    // The unmutated statement verifies; most mutations are caught.
    let bundle = Bundle::sign(IN_TOTO_PAYLOAD_TYPE, &payload, &signer);
    assert!(
        verify_model(
            &model,
            &bundle,
            &key,
            &VerifyOptions::default(),
            &NoProgress
        )?
        .is_verified()
    );
    assert!(
        rejected > verified,
        "rejected {rejected}, verified {verified}"
    );
    Ok(())
}
