//! The signed envelope.
//!
//! The signature covers `"alpr-fed/v1\0" || payload_type || "\0" || payload`, so a
//! signature made for one payload type or another protocol can never be replayed as
//! another. [`open`] verifies the chain and signature **before** anything decodes the
//! payload, and hands back the exact bytes that were signed.

use alpr_pki::{CertificateDer, Signer, TrustStore, VerifiedIdentity};
use prost::Message;

use crate::pb::Signed;
use crate::{Error, RefusalReason};

/// Domain-separation prefix of every signature.
pub const DOMAIN: &[u8] = b"alpr-fed/v1\0";

/// Payload type of an investigator's query.
pub const QUERY: &str = "alpr.v1.Query";
/// Payload type of a node's endorsement.
pub const ENDORSEMENT: &str = "alpr.v1.Endorsement";
/// Payload type of an answer.
pub const ANSWER: &str = "alpr.v1.Answer";
/// Payload type of a refusal.
pub const REFUSAL: &str = "alpr.v1.Refusal";
/// Payload type of an agreement.
pub const AGREEMENT: &str = "alpr.v1.Agreement";

/// Largest payload accepted inside an envelope (1 MiB).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// The bytes a signature covers.
pub fn signing_input(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + payload_type.len() + 1 + payload.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(payload_type.as_bytes());
    m.push(0);
    m.extend_from_slice(payload);
    m
}

/// Sign already-encoded payload bytes.
pub fn seal_bytes(signer: &Signer, payload_type: &str, payload: Vec<u8>) -> Result<Signed, Error> {
    let signature = signer.sign(&signing_input(payload_type, &payload))?;
    Ok(Signed {
        payload_type: payload_type.to_owned(),
        payload,
        signature,
        cert_chain: signer.chain().iter().map(|c| c.to_vec()).collect(),
        sealed_boxes: vec![],
        sealed_box_proofs: vec![],
    })
}

/// Encode and sign a message.
pub fn seal<M: Message>(signer: &Signer, payload_type: &str, msg: &M) -> Result<Signed, Error> {
    seal_bytes(signer, payload_type, msg.encode_to_vec())
}

/// Verify an envelope of the expected type; return the signer and the signed bytes.
pub fn open<'a>(
    trust: &TrustStore,
    env: &'a Signed,
    expected_type: &str,
    now: i64,
) -> Result<(VerifiedIdentity, &'a [u8]), Error> {
    if env.payload_type != expected_type {
        return Err(Error::refused(
            RefusalReason::BadSignature,
            format!(
                "payload type {:?} where {expected_type:?} was expected",
                env.payload_type
            ),
        ));
    }
    if env.payload.len() > MAX_PAYLOAD {
        return Err(Error::refused(
            RefusalReason::InvalidInput,
            "payload too large",
        ));
    }
    if env.cert_chain.is_empty() {
        return Err(Error::refused(
            RefusalReason::CertInvalid,
            "envelope carries no certificate",
        ));
    }
    let chain: Vec<CertificateDer<'_>> = env
        .cert_chain
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let id = trust.verify_signature(
        &chain,
        &signing_input(&env.payload_type, &env.payload),
        &env.signature,
        now,
    )?;
    Ok((id, &env.payload))
}

/// Verify, then decode the payload as `M`.
pub fn open_as<M: Message + Default>(
    trust: &TrustStore,
    env: &Signed,
    expected_type: &str,
    now: i64,
) -> Result<(VerifiedIdentity, M), Error> {
    let (id, bytes) = open(trust, env, expected_type, now)?;
    let msg = M::decode(bytes).map_err(|e| {
        Error::refused(
            RefusalReason::InvalidInput,
            format!("{expected_type} does not decode: {e}"),
        )
    })?;
    Ok((id, msg))
}

#[cfg(test)]
mod tests;

/// Endorse an investigator's encoded `Signed` query: nest those exact bytes in an
/// `Endorsement` signed by the node.
pub fn endorse(
    node: &Signer,
    node_ori: &str,
    signed_query: Vec<u8>,
    now: i64,
) -> Result<Signed, Error> {
    let e = crate::pb::Endorsement {
        signed_query,
        node_ori: node_ori.to_owned(),
        endorsed_at: now,
        routing: None,
        boxes: vec![],
        box_digests: vec![],
        sealed_query: vec![],
        boxes_root: vec![],
        box_count: 0,
    };
    seal(node, ENDORSEMENT, &e)
}

/// Endorse a sealed query: its routing copy, its one ciphertext (`sealed_query`, see
/// [`crate::seal::QueryKey`]) and the Merkle tree root over one box per target, signed by
/// the node, with every box attached outside the signature (`Signed.sealed_boxes`, in tree
/// order; see [`box_tree`]).
pub fn endorse_sealed(
    node: &Signer,
    node_ori: &str,
    routing: crate::pb::Query,
    sealed_query: Vec<u8>,
    boxes: Vec<crate::pb::SealedBox>,
    now: i64,
) -> Result<Signed, Error> {
    let encoded: Vec<Vec<u8>> = boxes.iter().map(prost::Message::encode_to_vec).collect();
    let tree = box_tree(&encoded);
    let e = crate::pb::Endorsement {
        signed_query: vec![],
        node_ori: node_ori.to_owned(),
        endorsed_at: now,
        routing: Some(routing),
        boxes: vec![],
        box_digests: vec![],
        sealed_query,
        boxes_root: tree.root().to_vec(),
        box_count: u32::try_from(encoded.len()).unwrap_or(u32::MAX),
    };
    let mut signed = seal(node, ENDORSEMENT, &e)?;
    signed.sealed_boxes = encoded;
    Ok(signed)
}

/// The Merkle tree (RFC 6962) over a sealed endorsement's encoded boxes, in order: its
/// root is `Endorsement.boxes_root`, and a party holding every box (the broker) proves each
/// target's box from it ([`box_proof`]).
pub fn box_tree(encoded_boxes: &[Vec<u8>]) -> crate::merkle::Tree {
    let mut tree = crate::merkle::Tree::new();
    for b in encoded_boxes {
        tree.push(crate::merkle::leaf_hash(b));
    }
    tree
}

/// The inclusion proof of box `index` in `tree` (from [`box_tree`]), as it travels beside
/// that box alone (`Signed.sealed_box_proofs`).
pub fn box_proof(
    tree: &crate::merkle::Tree,
    index: usize,
) -> Result<crate::pb::BoxProof, crate::merkle::ProofError> {
    let path = tree.inclusion_proof(index as u64, tree.size())?;
    Ok(crate::pb::BoxProof {
        index: index as u64,
        path: path.iter().map(|h| h.to_vec()).collect(),
    })
}
