use super::*;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// RFC 9180, Appendix A.2.1 (base setup) and A.2.1.1 (sequence number 0):
/// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305.
mod rfc9180_a2 {
    pub const INFO: &str = "4f6465206f6e2061204772656369616e2055726e";
    pub const SK_R: &str = "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb";
    pub const PK_R: &str = "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a";
    pub const ENC: &str = "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a";
    pub const AAD: &str = "436f756e742d30";
    pub const PT: &str = "4265617574792069732074727574682c20747275746820626561757479";
    pub const CT: &str = concat!(
        "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db",
        "21993c62ce81883d2dd1b51a28"
    );
}

#[test]
fn the_x25519_suite_opens_the_rfc_9180_vector() {
    use rfc9180_a2::*;
    let key = KeyPair::from_secret(Suite::X25519ChaCha20, &hex(SK_R)).unwrap();
    assert_eq!(
        key.public,
        hex(PK_R),
        "the public key derives from the secret"
    );
    let pt = open_raw(
        Suite::X25519ChaCha20,
        &hex(SK_R),
        &hex(ENC),
        &hex(INFO),
        &hex(AAD),
        &hex(CT),
    )
    .unwrap();
    assert_eq!(pt, hex(PT));
    // One bit off anywhere and it does not open.
    let mut ct = hex(CT);
    ct[0] ^= 1;
    assert_eq!(
        open_raw(
            Suite::X25519ChaCha20,
            &hex(SK_R),
            &hex(ENC),
            &hex(INFO),
            &hex(AAD),
            &ct
        ),
        Err(SealError::DoesNotOpen)
    );
    assert_eq!(
        open_raw(
            Suite::X25519ChaCha20,
            &hex(SK_R),
            &hex(ENC),
            b"other info",
            &hex(AAD),
            &hex(CT)
        ),
        Err(SealError::DoesNotOpen)
    );
}

fn ctx<'a>(target: &'a str, query_id: &'a [u8], requester: &'a str) -> Context<'a> {
    Context {
        purpose: "query",
        target_ori: target,
        query_id,
        requester,
    }
}

const Q: &[u8] = &[7u8; 16];

#[test]
fn each_suite_seals_and_opens_for_its_own_context_only() {
    for suite in [Suite::X25519ChaCha20, Suite::XWingChaCha20] {
        let key = KeyPair::generate(suite);
        let here = ctx("CA0560100", Q, "inv-1@CA0340000");
        let sealed = seal(suite, &key.public, &here, b"plate 8ABC123").unwrap();
        assert_eq!(sealed.key_id, key.key_id());
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"8ABC123"));
        assert_eq!(open(&key, &here, &sealed).unwrap(), b"plate 8ABC123");
        // Moved to another target, query, requester or purpose: it does not open.
        let other_q = [8u8; 16];
        for moved in [
            ctx("CA0100500", Q, "inv-1@CA0340000"),
            ctx("CA0560100", &other_q, "inv-1@CA0340000"),
            ctx("CA0560100", Q, "inv-2@CA0340000"),
            Context {
                purpose: "answer",
                ..here
            },
        ] {
            assert_eq!(
                open(&key, &moved, &sealed),
                Err(SealError::DoesNotOpen),
                "{moved:?}"
            );
        }
        // Tampered, re-labelled, or for another key: it does not open.
        let mut t = sealed.clone();
        let last = t.ciphertext.len() - 1;
        t.ciphertext[last] ^= 0x80;
        assert_eq!(open(&key, &here, &t), Err(SealError::DoesNotOpen));
        let other = KeyPair::generate(suite);
        assert_eq!(open(&other, &here, &sealed), Err(SealError::DoesNotOpen));
        let mut relabelled = sealed.clone();
        relabelled.key_id = other.key_id();
        assert_eq!(
            open(&other, &here, &relabelled),
            Err(SealError::DoesNotOpen)
        );
        // A key restored from its secret opens what the original could.
        let restored = KeyPair::from_secret(suite, key.secret_bytes()).unwrap();
        assert_eq!(restored.public, key.public);
        assert_eq!(open(&restored, &here, &sealed).unwrap(), b"plate 8ABC123");
    }
}

#[test]
fn the_suites_do_not_mix_and_bad_input_is_an_error_not_a_panic() {
    let x = KeyPair::generate(Suite::X25519ChaCha20);
    let pq = KeyPair::generate(Suite::XWingChaCha20);
    assert_eq!(x.public.len(), 32);
    assert_eq!(pq.public.len(), 1216, "X-Wing public keys are 1216 bytes");
    let here = ctx("CA0560100", Q, "inv-1@CA0340000");
    // An X25519 key given as an X-Wing key, and the reverse.
    assert!(matches!(
        seal(Suite::XWingChaCha20, &x.public, &here, b"x"),
        Err(SealError::Malformed {
            what: "public key",
            ..
        })
    ));
    assert!(matches!(
        seal(Suite::X25519ChaCha20, &pq.public, &here, b"x"),
        Err(SealError::Malformed { .. })
    ));
    let sealed = seal(Suite::XWingChaCha20, &pq.public, &here, b"x").unwrap();
    assert_eq!(sealed.enc.len(), 1120, "X-Wing ciphertexts are 1120 bytes");
    assert_eq!(open(&x, &here, &sealed), Err(SealError::DoesNotOpen));
    // A truncated encapsulation is malformed.
    let mut short = sealed.clone();
    short.enc.truncate(100);
    assert!(matches!(
        open(&pq, &here, &short),
        Err(SealError::Malformed {
            what: "encapsulated key",
            len: 100,
            ..
        })
    ));
    assert_eq!(Suite::from_id(9), Err(SealError::UnknownSuite(9)));
    assert_eq!(
        Suite::from_id(Suite::XWingChaCha20.id()),
        Ok(Suite::XWingChaCha20)
    );
    assert!(KeyPair::from_secret(Suite::X25519ChaCha20, &[1, 2, 3]).is_err());
    let dbg = format!("{pq:?}");
    assert!(dbg.contains("key_id") && !dbg.contains("secret"), "{dbg}");
}

#[test]
fn both_ends_export_one_reply_key_and_each_reply_has_its_own_nonce() {
    for suite in [Suite::X25519ChaCha20, Suite::XWingChaCha20] {
        let key = KeyPair::generate(suite);
        let c = ctx("CA0560100", &[7; 16], "inv-1@CA0340000");
        let (sealed, sender_key) = seal_with_reply(suite, &key.public, &c, b"the query").unwrap();
        let (plain, opener_key) = open_with_reply(&key, &c, &sealed).unwrap();
        assert_eq!(plain, b"the query");
        // The target answers under its exported key; the sealer opens it with its own.
        let aad = reply_aad(&[7; 16], "CA0560100");
        let (n1, ct1) = opener_key.seal(&aad, b"the signed answer").unwrap();
        let (n2, ct2) = opener_key.seal(&aad, b"the signed answer").unwrap();
        assert_ne!(n1, n2, "a fresh nonce per reply");
        assert_ne!(ct1, ct2);
        assert_eq!(
            sender_key.open(&aad, &n1, &ct1).unwrap(),
            b"the signed answer"
        );
        // Bound to its query and provider, and to its nonce; changed bytes do not open.
        for (a, n, c) in [
            (reply_aad(&[8; 16], "CA0560100"), n1.to_vec(), ct1.clone()),
            (reply_aad(&[7; 16], "CA0100500"), n1.to_vec(), ct1.clone()),
            (aad.clone(), n2.to_vec(), ct1.clone()),
            (aad.clone(), n1[..5].to_vec(), ct1.clone()),
            (aad.clone(), n1.to_vec(), {
                let mut x = ct1.clone();
                x[0] ^= 1;
                x
            }),
        ] {
            assert_eq!(sender_key.open(&a, &n, &c), Err(SealError::DoesNotOpen));
        }
        // Another box's reply key opens nothing of this one.
        let (_, other) = seal_with_reply(suite, &key.public, &c, b"another query").unwrap();
        assert_eq!(other.open(&aad, &n1, &ct1), Err(SealError::DoesNotOpen));
    }
}

#[test]
fn a_wire_box_round_trips_and_malformed_headers_are_errors() {
    let key = KeyPair::generate(Suite::X25519ChaCha20);
    let c = ctx("CA0560100", &[7; 16], "inv-1@CA0340000");
    let b = seal(Suite::X25519ChaCha20, &key.public, &c, b"q").unwrap();
    let wire = b.to_wire("CA0560100");
    assert_eq!(wire.recipient_ori, "CA0560100");
    assert_eq!(SealedBox::from_wire(&wire).unwrap(), b);
    let mut bad = wire.clone();
    bad.key_id.truncate(15);
    assert!(matches!(
        SealedBox::from_wire(&bad),
        Err(SealError::Malformed { what: "key id", .. })
    ));
    bad = wire;
    bad.suite = 7;
    assert_eq!(SealedBox::from_wire(&bad), Err(SealError::UnknownSuite(7)));
    assert!(check_public(Suite::X25519ChaCha20, &key.public).is_ok());
    assert!(check_public(Suite::X25519ChaCha20, &[1, 2, 3]).is_err());
    assert!(check_public(Suite::XWingChaCha20, &key.public).is_err());
}

#[test]
fn sealed_lengths_show_only_a_power_of_two_bucket() {
    let key = KeyPair::generate(Suite::X25519ChaCha20);
    let c = ctx("CA0560100", &[7; 16], "inv-1@CA0340000");
    let len = |n: usize| {
        let (b, r) =
            seal_with_reply(Suite::X25519ChaCha20, &key.public, &c, &vec![b'x'; n]).unwrap();
        let (_, reply) = r.seal(b"aad", &vec![b'y'; n]).unwrap();
        (b.ciphertext.len(), reply.len())
    };
    // A short and a long reason, a few reads or many: the same sizes within a bucket.
    assert_eq!(len(10), len(900));
    assert_eq!(len(1100), len(2000));
    assert!(len(2000).0 < len(2100).0);
    // Opened, the padding is gone.
    let (b, _) = seal_with_reply(Suite::X25519ChaCha20, &key.public, &c, b"exact").unwrap();
    assert_eq!(open(&key, &c, &b).unwrap(), b"exact");
    assert_eq!(pad(b"abc").len(), PAD_MIN);
    assert_eq!(unpad(&pad(b"abc")).unwrap(), b"abc");
    // Malformed padding is an error, never a panic.
    for bad in [vec![], vec![0, 0, 0], vec![0, 0, 0, 9, 1], {
        let mut p = pad(b"abc");
        p[10] = 1;
        p
    }] {
        assert_eq!(unpad(&bad), Err(SealError::BadPadding));
    }
}

#[test]
fn one_query_key_in_every_target_box_opens_the_one_ciphertext_and_each_box_keeps_its_reply_key() {
    let query_id = [7u8; 16];
    let who = "inv-1@CA0340000";
    let aad = sealed_query_aad(&query_id, who);
    let qk = QueryKey::generate().unwrap();
    let body = qk.seal(&aad, b"the signed query").unwrap();
    for suite in [Suite::X25519ChaCha20, Suite::XWingChaCha20] {
        let (a, b) = (KeyPair::generate(suite), KeyPair::generate(suite));
        let (ca, cb) = (
            ctx("CA0560100", &query_id, who),
            ctx("CA0100500", &query_id, who),
        );
        let (box_a, sender_a) = seal_query_key(suite, &a.public, &ca, &qk).unwrap();
        let (box_b, sender_b) = seal_query_key(suite, &b.public, &cb, &qk).unwrap();
        // A box's plaintext is exactly the key: a fixed size, not padded to 1 KiB.
        assert_eq!(box_a.ciphertext.len(), 32 + 16);
        let (ka, reply_a) = open_query_key(&a, &ca, &box_a).unwrap();
        let (kb, reply_b) = open_query_key(&b, &cb, &box_b).unwrap();
        assert_eq!(ka.open(&aad, &body).unwrap(), b"the signed query");
        assert_eq!(kb.open(&aad, &body).unwrap(), b"the signed query");
        // Each target's reply key is its own, shared with the sealer alone.
        let (n, ct) = reply_a.seal(b"r", b"answer of a").unwrap();
        assert_eq!(sender_a.open(b"r", &n, &ct).unwrap(), b"answer of a");
        assert_eq!(reply_b.open(b"r", &n, &ct), Err(SealError::DoesNotOpen));
        assert_eq!(sender_b.open(b"r", &n, &ct), Err(SealError::DoesNotOpen));
        // A box moved to the other target does not open there.
        assert!(open_query_key(&b, &cb, &box_a).is_err());
        assert_eq!(
            open_query_key(&a, &cb, &box_a).err(),
            Some(SealError::DoesNotOpen)
        );
        // A box of another length (a padded one) is not a query key.
        let padded = seal(suite, &a.public, &ca, &[0; 32]).unwrap();
        assert_eq!(
            open_query_key(&a, &ca, &padded).err(),
            Some(SealError::BadPadding)
        );
    }
    // The ciphertext is bound to its query and requester; changed or cut short, or under
    // another key, it does not open.
    let mut flipped = body.clone();
    flipped[20] ^= 1;
    for (a, b) in [
        (sealed_query_aad(&[8; 16], who), body.clone()),
        (sealed_query_aad(&query_id, "inv-2@CA0340000"), body.clone()),
        (aad.clone(), flipped),
        (aad.clone(), body[..11].to_vec()),
        (aad.clone(), vec![]),
    ] {
        assert_eq!(qk.open(&a, &b), Err(SealError::DoesNotOpen));
    }
    let other = QueryKey::generate().unwrap();
    assert_eq!(other.open(&aad, &body), Err(SealError::DoesNotOpen));
    // Padded like a box: a short and a long query fall in one bucket.
    assert_eq!(
        qk.seal(&aad, &[1; 10]).unwrap().len(),
        qk.seal(&aad, &[1; 900]).unwrap().len()
    );
    assert!(!format!("{qk:?}").contains(&hex::encode(&qk.0[..4])));
}
