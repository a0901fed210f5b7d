"""Offline tests of the example client: no server, a throwaway PKI made here.

    python3 -m unittest discover examples/python
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import ipaddress
import tempfile
import unittest
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import alpr_client as client

SACRAMENTO, VENTURA, FRESNO = "CA0340000", "CA0560100", "CA0100500"
NOW = dt.datetime.now(dt.timezone.utc)
DER = serialization.Encoding.DER
pb: Any = None


def setUpModule() -> None:
    global pb
    pb, _ = client.load_proto()


# ---------------------------------------------------------------- a throwaway state PKI

def agency_uris(ori: str) -> list[str]:
    return [f"urn:alpr:ori:{ori}", f"urn:alpr:agency:Agency%20{ori}",
            "urn:alpr:jurisdiction:US-CA", "urn:alpr:kind:local"]


def issue(cn: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, uris: list[str],
          not_after: dt.datetime | None = None) -> x509.Certificate:
    """One certificate; `issuer=None` makes it self-signed (a root)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder()
         .subject_name(name)
         .issuer_name(issuer.subject if issuer else name)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(NOW - dt.timedelta(hours=1))
         .not_valid_after(not_after or NOW + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca and issuer else None),
                        critical=True)
         .add_extension(x509.KeyUsage(
             digital_signature=True, content_commitment=False, key_encipherment=False,
             data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
             encipher_only=False, decipher_only=False), critical=True))
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    if not ca:
        names += [x509.DNSName("localhost"),
                  x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


class Pki:
    """A root, agency CAs on demand, and leaves (node or person) under them."""

    def __init__(self, cn: str = "Test State Root") -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = issue(cn, self.root_key, None, self.root_key, ca=True, uris=[])
        self.cas: dict[str, tuple[x509.Certificate, ec.EllipticCurvePrivateKey]] = {}

    def ca(self, ori: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if ori not in self.cas:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = issue(f"{ori} CA", key, self.root, self.root_key, ca=True,
                         uris=agency_uris(ori))
            self.cas[ori] = (cert, key)
        return self.cas[ori]

    def leaf(self, ori: str, role: str, user: str | None = None, *, claim_ori: str = "",
             not_after: dt.datetime | None = None) -> client.Investigator:
        """A leaf under `ori`'s CA claiming `claim_ori` (default: `ori`) and `role`."""
        ca, ca_key = self.ca(ori)
        key = ec.generate_private_key(ec.SECP256R1())
        uris = [f"urn:alpr:role:{role}"] + ([f"urn:alpr:user:{user}"] if user else [])
        cert = issue(f"{user or ori} ({role})", key, ca, ca_key, ca=False,
                     uris=uris + agency_uris(claim_ori or ori), not_after=not_after)
        chain = [cert, ca]
        return client.Investigator(
            user=user or "", ori=claim_ori or ori, key=key,
            chain_der=[c.public_bytes(DER) for c in chain],
            chain_pem=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain),
            key_pem=key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))


PKI = Pki()
ROGUE = Pki("Test State Root")  # same name, other key: not the state root
REASON = "Silver Honda Civic stolen from a Fair Oaks driveway; the owner reported this plate"


def make_query(inv: client.Investigator, **kw: Any) -> Any:
    now = int(NOW.timestamp())
    args: dict[str, Any] = dict(
        plate="8abc-123", plate_state="ca", window_start=now - 7 * 86_400, window_end=now,
        purpose="240", case_number="SSD-2026-018832", reason=REASON, targets=[VENTURA],
        now=now)
    args.update(kw)
    return client.build_query(pb, inv, **args)


# ---------------------------------------------------------------- building and signing

class QueryTests(unittest.TestCase):
    def setUp(self) -> None:
        self.inv = PKI.leaf(SACRAMENTO, "investigator", "inv-ca0340000")

    def test_signing_input_is_domain_type_nul_payload(self) -> None:
        self.assertEqual(client.signing_input("alpr.v1.Query", b"\x01\x02"),
                         b"alpr-fed/v1\x00alpr.v1.Query\x00\x01\x02")

    def test_query_fields(self) -> None:
        q = make_query(self.inv, reason="Cafe\u0301 owner saw the stolen Civic leave Fair Oaks")
        self.assertEqual(len(q.query_id), 16)
        self.assertEqual((q.requester_user, q.requester_ori), ("inv-ca0340000", SACRAMENTO))
        self.assertEqual((q.plate, q.plate_state), ("8ABC123", "CA"))
        self.assertEqual(q.expires_at - q.issued_at, 300)
        self.assertTrue(q.reason.startswith("Caf\u00e9 "))  # NFC: one code point
        self.assertNotEqual(q.query_id, make_query(self.inv).query_id)

    def test_signature_verifies_with_the_certificate_key(self) -> None:
        q = make_query(self.inv)
        signed = pb.Signed.FromString(
            client.seal(pb, self.inv, client.QUERY_TYPE, q.SerializeToString())
            .SerializeToString())
        self.assertEqual(signed.payload_type, "alpr.v1.Query")
        self.assertEqual(list(signed.cert_chain), self.inv.chain_der)
        key = x509.load_der_x509_certificate(signed.cert_chain[0]).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        message = client.signing_input(signed.payload_type, signed.payload)
        key.verify(signed.signature, message, ec.ECDSA(hashes.SHA256()))  # raises if bad
        self.assertEqual(pb.Query.FromString(signed.payload), q)
        with self.assertRaises(InvalidSignature):
            key.verify(signed.signature, message + b"x", ec.ECDSA(hashes.SHA256()))

    def test_plate_and_state_normalization(self) -> None:
        self.assertEqual(client.normalize_plate(" 8abc-123 "), "8ABC123")
        for bad in ("8AB*123", "", "8ABC1234567", "8ÄBC123"):
            with self.assertRaises(client.ClientError):
                client.normalize_plate(bad)
        self.assertEqual(client.normalize_state("nv"), "NV")
        self.assertEqual(client.normalize_state("any"), "ANY")
        for bad in ("", "CAL", "C1"):
            with self.assertRaises(client.ClientError):
                client.normalize_state(bad)

    def test_loads_the_demo_layout(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            people = Path(d, "pki", "agencies", SACRAMENTO, "people")
            people.mkdir(parents=True)
            (people / "inv-ca0340000.crt").write_bytes(self.inv.chain_pem)
            (people / "inv-ca0340000.key").write_bytes(self.inv.key_pem)
            Path(d, SACRAMENTO).mkdir()
            Path(d, SACRAMENTO, "node.toml").write_text(
                f'ori = "{SACRAMENTO}"\nlisten = "127.0.0.1:40821"\n')
            inv = client.load_investigator(Path(d, "pki"), SACRAMENTO)
            self.assertEqual((inv.user, inv.ori), ("inv-ca0340000", SACRAMENTO))
            self.assertEqual(inv.chain_der, self.inv.chain_der)
            self.assertEqual(client.node_address(Path(d), SACRAMENTO), "127.0.0.1:40821")
            with self.assertRaises(client.ClientError):
                client.load_investigator(Path(d, "pki"), VENTURA)


# ---------------------------------------------------------------- reply checks

class ReplyFixture(unittest.TestCase):
    """A Sacramento query, Ventura's node, and helpers to build its signed replies."""

    def setUp(self) -> None:
        self.inv = PKI.leaf(SACRAMENTO, "investigator", "inv-ca0340000")
        self.node = PKI.leaf(VENTURA, "node")
        self.query = make_query(self.inv)

    def answer(self, **changes: Any) -> Any:
        q = self.query
        reads = [pb.Read(plate=q.plate, captured_at=q.window_end - 3600 * i,
                         camera_id=f"VEN-CAM-0{i}", latitude=34.27, longitude=-119.23,
                         plate_state="CA") for i in range(3)]
        a = pb.Answer(query_id=q.query_id, provider_ori=VENTURA, requester_ori=q.requester_ori,
                      requester_user=q.requester_user, reads=reads,
                      not_for_redissemination=True, answered_at=q.issued_at)
        for k, v in changes.items():
            if k == "reads":
                del a.reads[:]
                a.reads.extend(v)
            else:
                setattr(a, k, v)
        return a

    def result(self, msg: Any, signer: client.Investigator | None = None, ori: str = VENTURA,
               status: int | None = None, payload_type: str | None = None) -> Any:
        kind = client.ANSWER_TYPE if msg.DESCRIPTOR.name == "Answer" else client.REFUSAL_TYPE
        signed = client.seal(pb, signer or self.node, payload_type or kind,
                             msg.SerializeToString())
        if status is None:
            status = (pb.TARGET_STATUS_ANSWERED if kind == client.ANSWER_TYPE
                      else pb.TARGET_STATUS_REFUSED)
        return pb.TargetResult(ori=ori, status=status, reply=signed, decided_by=ori)

    def assertBad(self, result: Any, check: str) -> None:
        with self.assertRaises(client.BadReply) as cm:
            client.verify_reply(pb, result, self.query, PKI.root)
        self.assertEqual(cm.exception.check, check, str(cm.exception))
        outcome = client.evaluate(pb, result, self.query, PKI.root)
        self.assertEqual(outcome.status, "BAD_REPLY")
        self.assertEqual(outcome.reads, [])


class ReplyTests(ReplyFixture):
    def test_good_answer(self) -> None:
        kind, msg, signer = client.verify_reply(pb, self.result(self.answer()), self.query,
                                                PKI.root)
        self.assertEqual((kind, signer, len(msg.reads)), ("answer", VENTURA, 3))
        outcome = client.evaluate(pb, self.result(self.answer()), self.query, PKI.root)
        self.assertEqual(outcome.line, f"ANSWERED 3 reads (verified, signed by {VENTURA})")

    def test_good_refusal(self) -> None:
        r = pb.Refusal(query_id=self.query.query_id, provider_ori=VENTURA,
                       reason=pb.NODE_REFUSING, detail="sharing is off")
        outcome = client.evaluate(pb, self.result(r), self.query, PKI.root)
        self.assertEqual(outcome.status, "REFUSED")
        self.assertIn("REFUSED NODE_REFUSING by CA0560100: sharing is off", outcome.line)

    def test_wrong_signer_role(self) -> None:
        person = PKI.leaf(VENTURA, "investigator", "inv-ca0560100")
        self.assertBad(self.result(self.answer(), signer=person), "signer role")

    def test_signer_ori_not_target(self) -> None:
        fresno = PKI.leaf(FRESNO, "node")
        self.assertBad(self.result(self.answer(provider_ori=FRESNO), signer=fresno),
                       "signer ORI")

    def test_provider_ori_not_signer(self) -> None:
        self.assertBad(self.result(self.answer(provider_ori=FRESNO)), "provider_ori")

    def test_query_id_mismatch(self) -> None:
        self.assertBad(self.result(self.answer(query_id=b"\x00" * 16)), "query_id")
        refusal = pb.Refusal(query_id=b"\x00" * 16, provider_ori=VENTURA)
        self.assertBad(self.result(refusal), "query_id")

    def test_requester_mismatch(self) -> None:
        self.assertBad(self.result(self.answer(requester_user="inv-other")), "requester_user")
        self.assertBad(self.result(self.answer(requester_ori=FRESNO)), "requester_ori")

    def test_read_of_another_plate(self) -> None:
        read = pb.Read(plate="8ABC124", captured_at=self.query.window_end, plate_state="CA")
        self.assertBad(self.result(self.answer(reads=[read])), "read plate")

    def test_read_of_another_state(self) -> None:
        for state in ("NV", ""):
            read = pb.Read(plate="8ABC123", captured_at=self.query.window_end,
                           plate_state=state)
            self.assertBad(self.result(self.answer(reads=[read])), "read plate_state")

    def test_any_state_accepts_every_state(self) -> None:
        self.query = make_query(self.inv, plate_state="ANY")
        reads = [pb.Read(plate="8ABC123", captured_at=self.query.window_end, plate_state=s)
                 for s in ("NV", "")]
        kind, _, _ = client.verify_reply(pb, self.result(self.answer(reads=reads)),
                                         self.query, PKI.root)
        self.assertEqual(kind, "answer")

    def test_read_outside_window(self) -> None:
        for t in (self.query.window_start - 1, self.query.window_end + 1):
            read = pb.Read(plate="8ABC123", captured_at=t, plate_state="CA")
            self.assertBad(self.result(self.answer(reads=[read])), "read window")

    def test_not_for_redissemination_false(self) -> None:
        self.assertBad(self.result(self.answer(not_for_redissemination=False)),
                       "not_for_redissemination")

    def test_broken_signature(self) -> None:
        result = self.result(self.answer())
        sig = bytearray(result.reply.signature)
        sig[-1] ^= 0x01
        result.reply.signature = bytes(sig)
        self.assertBad(result, "signature")
        tampered = self.result(self.answer())
        tampered.reply.payload = self.answer(requester_user="inv-other").SerializeToString()
        self.assertBad(tampered, "signature")

    def test_chain_not_to_root(self) -> None:
        rogue_node = ROGUE.leaf(VENTURA, "node")
        self.assertBad(self.result(self.answer(), signer=rogue_node), "chain")
        short = self.result(self.answer())
        del short.reply.cert_chain[1:]
        self.assertBad(short, "chain")

    def test_expired_signer(self) -> None:
        old = PKI.leaf(VENTURA, "node", not_after=NOW - dt.timedelta(minutes=1))
        self.assertBad(self.result(self.answer(), signer=old), "validity")

    def test_leaf_claims_another_agency_than_its_ca(self) -> None:
        liar = PKI.leaf(VENTURA, "node", claim_ori=FRESNO)  # Ventura's CA, Fresno's claims
        self.assertBad(self.result(self.answer(provider_ori=FRESNO), signer=liar, ori=FRESNO),
                       "CA claims")

    def test_wrong_payload_type(self) -> None:
        self.assertBad(self.result(self.answer(), payload_type="alpr.v1.Query"),
                       "payload type")


# ---------------------------------------------------------------- outcomes and exit codes

class OutcomeTests(ReplyFixture):
    def test_node_reported_bad_reply_shows_no_reads(self) -> None:
        result = self.result(self.answer(), status=pb.TARGET_STATUS_BAD_REPLY)
        result.detail = "read 1 is of another plate"
        outcome = client.evaluate(pb, result, self.query, PKI.root)
        self.assertEqual((outcome.status, outcome.reads), ("BAD_REPLY", []))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            client.print_outcome(outcome)
        self.assertNotIn("VEN-CAM", out.getvalue())

    def test_status_must_agree_with_the_signed_reply(self) -> None:
        result = self.result(self.answer(), status=pb.TARGET_STATUS_REFUSED)
        self.assertEqual(client.evaluate(pb, result, self.query, PKI.root).status, "BAD_REPLY")
        empty = pb.TargetResult(ori=VENTURA, status=pb.TARGET_STATUS_ANSWERED)
        self.assertEqual(client.evaluate(pb, empty, self.query, PKI.root).status, "BAD_REPLY")

    def test_unsigned_outcomes(self) -> None:
        refused = pb.TargetResult(ori=VENTURA, status=pb.TARGET_STATUS_REFUSED,
                                  reason=pb.NO_AGREEMENT, detail="none", decided_by="broker")
        o = client.evaluate(pb, refused, self.query, PKI.root)
        self.assertEqual(o.line, "REFUSED NO_AGREEMENT by broker: none")
        gone = pb.TargetResult(ori=VENTURA, status=pb.TARGET_STATUS_UNAVAILABLE,
                               reason=pb.UNAVAILABLE, detail="timed out")
        self.assertEqual(client.evaluate(pb, gone, self.query, PKI.root).line,
                         "UNAVAILABLE: timed out")
        stranger = self.result(self.answer(provider_ori=FRESNO), ori=FRESNO)
        self.assertEqual(client.evaluate(pb, stranger, self.query, PKI.root).status,
                         "BAD_REPLY")

    def test_exit_codes(self) -> None:
        answered = client.evaluate(pb, self.result(self.answer()), self.query, PKI.root)
        empty = client.evaluate(pb, self.result(self.answer(reads=[])), self.query, PKI.root)
        refused = client.Outcome(FRESNO, "REFUSED", "REFUSED NO_AGREEMENT by broker: none")
        self.assertEqual(client.exit_code([refused, answered]), 0)
        self.assertEqual(client.exit_code([refused, empty]), 0)
        self.assertEqual(client.exit_code([refused, empty], expect_answer=True), 3)
        self.assertEqual(client.exit_code([refused, answered], expect_answer=True), 0)
        self.assertEqual(client.exit_code([refused]), 3)

    def test_refusal_code_comes_from_the_trailer(self) -> None:
        class FakeError:
            def __init__(self, md: list[tuple[str, str]]) -> None:
                self.md = md

            def trailing_metadata(self) -> list[tuple[str, str]]:
                return self.md

            def code(self) -> Any:
                return client.grpc.StatusCode.PERMISSION_DENIED

        err = FakeError([("date", "x"), ("alpr-refusal-reason", "REASON_INSUFFICIENT")])
        self.assertEqual(client.refusal_code(err), "REASON_INSUFFICIENT")
        self.assertIn("no alpr-refusal-reason trailer", client.refusal_code(FakeError([])))


if __name__ == "__main__":
    unittest.main()
