//! Property tests (proptest) of the rules every party applies alike: the Merkle proofs
//! that regulators, nodes and the broker check verify for every tree and fail for every
//! change, plate normalization is idempotent and leaves only `A-Z0-9`, wildcard matching
//! agrees with the pattern it was normalized to, and undecodable messages never panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_proto::input;
use alpr_proto::merkle::{self, Hash};
use proptest::prelude::*;
use prost::Message;

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| merkle::leaf_hash(format!("entry {i}").as_bytes()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn inclusion_proofs_verify_and_any_changed_hash_fails(n in 1usize..300, pick in any::<u64>(), flip in any::<u8>()) {
        let l = leaves(n);
        let root = merkle::root(&l);
        let index = pick % n as u64;
        let proof = merkle::inclusion_proof(&l, index).unwrap();
        prop_assert!(merkle::verify_inclusion(&l[index as usize], index, n as u64, &proof, &root).is_ok());
        // Another leaf does not verify, nor a proof with one hash changed.
        let other = merkle::leaf_hash(b"not in the log");
        prop_assert!(merkle::verify_inclusion(&other, index, n as u64, &proof, &root).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let k = flip as usize % bad.len();
            bad[k][flip as usize % 32] ^= 1 | flip;
            prop_assert!(merkle::verify_inclusion(&l[index as usize], index, n as u64, &bad, &root).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify_between_any_two_sizes_and_a_rewritten_history_fails(n in 2usize..300, pick in any::<u64>(), victim in any::<u64>()) {
        let l = leaves(n);
        let old = 1 + pick % (n as u64 - 1);
        let proof = merkle::consistency_proof(&l, old).unwrap();
        let old_root = merkle::root(&l[..old as usize]);
        let new_root = merkle::root(&l);
        prop_assert!(merkle::verify_consistency(old, n as u64, &proof, &old_root, &new_root).is_ok());
        // The same sizes over a history with one old entry rewritten: no proof from the
        // honest log makes the forged old head consistent with the new one.
        let mut forged = l.clone();
        let v = (victim % old) as usize;
        forged[v] = merkle::leaf_hash(b"rewritten");
        let forged_root = merkle::root(&forged[..old as usize]);
        prop_assert!(merkle::verify_consistency(old, n as u64, &proof, &forged_root, &new_root).is_err());
    }

    #[test]
    fn plate_normalization_is_idempotent_and_leaves_only_letters_and_digits(raw in ".{0,20}") {
        if let Ok(p) = input::normalize_plate(&raw) {
            prop_assert!(p.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()), "{p:?}");
            prop_assert_eq!(input::normalize_plate(&p).ok(), Some(p.clone()));
        }
    }

    #[test]
    fn a_wildcard_matches_exactly_the_plates_that_agree_on_its_known_characters(
        plate in "[A-Z0-9]{5,8}", holes in proptest::collection::vec(any::<usize>(), 1..=2), other in "[A-Z0-9]{5,8}",
    ) {
        let mut pattern: Vec<char> = plate.chars().collect();
        for h in &holes {
            let k = h % pattern.len();
            pattern[k] = '?';
        }
        let pattern: String = pattern.into_iter().collect();
        if let Ok(p) = input::normalize_wildcard_plate(&pattern) {
            prop_assert!(input::matches_wildcard(&p, &plate));
            let agrees = other.len() == p.len()
                && p.chars().zip(other.chars()).all(|(a, b)| a == '?' || a == b);
            prop_assert_eq!(input::matches_wildcard(&p, &other), agrees);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_envelope_or_query_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = alpr_proto::pb::Signed::decode(bytes.as_slice());
        let _ = alpr_proto::pb::Query::decode(bytes.as_slice());
        let _ = alpr_proto::pb::SealedBox::decode(bytes.as_slice());
        let _ = alpr_proto::pb::SealedReply::decode(bytes.as_slice());
        let _ = alpr_proto::pb::HotlistShare::decode(bytes.as_slice());
    }
}
