#!/usr/bin/env python3
"""Example investigator client for the federated ALPR query system, in Python.

It proves the wire contract in proto/proto/alpr/v1/alpr.proto is complete: with nothing
but that file, grpcio and cryptography it

1. compiles the .proto at run time (grpc_tools.protoc into a temporary directory),
2. builds a Query and signs it with the investigator's person key (a `Signed` envelope
   over "alpr-fed/v1\\0" || payload_type || "\\0" || payload),
3. sends it through the investigator's own node (alpr.v1.NodeLocal/Search) over mutual
   TLS with the same person certificate, and
4. verifies every per-target reply itself: signature, certificate chain to the state
   root, signer claims, and the binding of the Answer or Refusal to this query.

Run against the demo federation (see README.md):

    python3 examples/python/alpr_client.py --dir DIR

Exit codes, as the Rust CLI: 0 when at least one target answered (verified), 3 when
nothing was answered, 1 on errors (missing files, no connection).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.resources
import os
import secrets
import subprocess
import sys
import tempfile
import time
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

# gRPC's C core logs failed TLS handshakes to stderr at INFO; the error is reported anyway.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

try:
    import grpc
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from google.protobuf.message import DecodeError
except ImportError as missing:
    if __name__ == "__main__":
        sys.exit(f"error: {missing.name} is not installed; "
                 "run: pip install -r examples/python/requirements.txt")
    raise

DOMAIN = b"alpr-fed/v1\x00"
QUERY_TYPE = "alpr.v1.Query"
ANSWER_TYPE = "alpr.v1.Answer"
REFUSAL_TYPE = "alpr.v1.Refusal"
CLAIM_PREFIX = "urn:alpr:"
AGENCY_CLAIMS = ("ori", "agency", "jurisdiction", "kind")
REFUSAL_TRAILER = "alpr-refusal-reason"
DEFAULT_PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto" / "proto"
PROTO_FILE = "alpr/v1/alpr.proto"


class ClientError(Exception):
    """An expected failure (missing file, bad argument, no connection): one line, exit 1."""


class BadReply(Exception):
    """A reply that failed a check; `check` names which one, `signer` who signed it."""

    def __init__(self, check: str, detail: str, signer: str = "unknown signer") -> None:
        super().__init__(f"{check}: {detail} (signed by {signer})")
        self.check = check
        self.signer = signer


# ---------------------------------------------------------------- the proto, compiled now

_compiled: tuple[ModuleType, ModuleType] | None = None


def load_proto(proto_root: Path = DEFAULT_PROTO_ROOT) -> tuple[ModuleType, ModuleType]:
    """Compile alpr.proto with grpc_tools.protoc and return (alpr_pb2, alpr_pb2_grpc)."""
    global _compiled
    if _compiled is not None:
        return _compiled
    if not (proto_root / PROTO_FILE).is_file():
        raise ClientError(f"{proto_root / PROTO_FILE} not found (use --proto)")
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="alpr-proto-") as out:
        run = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_root}",
             f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}",
             PROTO_FILE],
            capture_output=True, text=True)
        if run.returncode != 0:
            raise ClientError(f"protoc failed: {run.stderr.strip()}")
        sys.path.insert(0, out)
        try:
            pb = importlib.import_module("alpr.v1.alpr_pb2")
            pb_grpc = importlib.import_module("alpr.v1.alpr_pb2_grpc")
        finally:
            sys.path.remove(out)  # both modules are loaded; the files may go
    _compiled = (pb, pb_grpc)
    return _compiled


# ---------------------------------------------------------------- files and identities

def uri_claims(cert: x509.Certificate) -> dict[str, str]:
    """The certificate's `urn:alpr:<name>:<value>` URI SAN claims; a repeated one is an error."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {}
    claims: dict[str, str] = {}
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(CLAIM_PREFIX):
            name, _, value = uri[len(CLAIM_PREFIX):].partition(":")
            if name in claims:
                raise ValueError(f"claim {name} appears twice")
            claims[name] = value
    return claims


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ClientError(f"cannot read {path}: {e.strerror}") from None


@dataclass
class Investigator:
    """A person certificate chain and key, and the claims the query must repeat."""
    user: str
    ori: str
    key: ec.EllipticCurvePrivateKey
    chain_der: list[bytes]     # leaf, then agency CA
    chain_pem: bytes
    key_pem: bytes


def load_investigator(pki_dir: Path, ori: str) -> Investigator:
    """Load DIR/pki/agencies/<ORI>/people/inv-<ori>.crt and .key."""
    base = pki_dir / "agencies" / ori / "people" / f"inv-{ori.lower()}"
    chain_pem = read_file(base.with_suffix(".crt"))
    key_pem = read_file(base.with_suffix(".key"))
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        claims = uri_claims(chain[0])
    except ValueError as e:
        raise ClientError(f"{base}.crt/.key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ClientError(f"{base}.key is not an ECDSA key")
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise ClientError(f"{base}.key does not belong to {base}.crt")
    if claims.get("role") != "investigator" or "user" not in claims or "ori" not in claims:
        raise ClientError(f"{base}.crt is not an investigator certificate: {claims}")
    return Investigator(
        user=claims["user"], ori=claims["ori"], key=key,
        chain_der=[c.public_bytes(serialization.Encoding.DER) for c in chain],
        chain_pem=chain_pem, key_pem=key_pem)


def node_address(demo_dir: Path, ori: str) -> str:
    """The `listen` address of DIR/<ORI>/node.toml (a wildcard host becomes 127.0.0.1)."""
    path = demo_dir / ori / "node.toml"
    try:
        listen = tomllib.loads(read_file(path).decode())["listen"]
    except (tomllib.TOMLDecodeError, KeyError) as e:
        raise ClientError(f"{path}: no usable listen address ({e})") from None
    host, _, port = listen.rpartition(":")
    return f"127.0.0.1:{port}" if host in ("0.0.0.0", "[::]") else listen


# ---------------------------------------------------------------- building and signing

def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def normalize_plate(plate: str) -> str:
    """Upper-case and drop spaces and dashes; anything else but A-Z0-9 is an error."""
    p = "".join(c for c in nfc(plate).upper() if c not in " -")
    if not 1 <= len(p) <= 10 or not all(c.isascii() and c.isalnum() for c in p):
        raise ClientError(f"plate {plate!r} must be 1..10 of A-Z and 0-9 (no wildcards)")
    return p


def normalize_state(state: str) -> str:
    """A two-letter issuing jurisdiction (CA, NV, US...) upper-cased, or ANY."""
    s = nfc(state).strip().upper()
    if s != "ANY" and not (len(s) == 2 and s.isascii() and s.isalpha()):
        raise ClientError(f"plate state {state!r} must be two letters (e.g. CA) or ANY")
    return s


def signing_input(payload_type: str, payload: bytes) -> bytes:
    """The bytes every signature covers: domain, type, NUL, payload."""
    return DOMAIN + payload_type.encode() + b"\x00" + payload


def build_query(pb: ModuleType, inv: Investigator, *, plate: str, plate_state: str,
                window_start: int, window_end: int, purpose: str, case_number: str,
                reason: str, targets: list[str], warrant_ref: str = "",
                on_behalf_of: str = "", ttl: int = 300, now: int | None = None) -> Any:
    """A Query bound to the investigator's certificate claims, all text in NFC."""
    now = int(time.time()) if now is None else now
    return pb.Query(
        query_id=secrets.token_bytes(16),
        requester_user=nfc(inv.user), requester_ori=nfc(inv.ori),
        plate=normalize_plate(plate), plate_state=normalize_state(plate_state),
        window_start=window_start, window_end=window_end,
        purpose_code=nfc(purpose), case_number=nfc(case_number), reason=nfc(reason),
        warrant_ref=nfc(warrant_ref), on_behalf_of_ori=nfc(on_behalf_of),
        targets=[nfc(t) for t in targets], issued_at=now, expires_at=now + ttl)


def seal(pb: ModuleType, inv: Investigator, payload_type: str, payload: bytes) -> Any:
    """Sign encoded payload bytes into a `Signed` envelope (ECDSA P-256, SHA-256, DER)."""
    signature = inv.key.sign(signing_input(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    return pb.Signed(payload_type=payload_type, payload=payload, signature=signature,
                     cert_chain=inv.chain_der)


# ---------------------------------------------------------------- verifying replies

def _check_validity(cert: x509.Certificate, what: str, now: dt.datetime, signer: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise BadReply("validity", f"{what} certificate is not valid now", signer)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def verify_envelope(signed: Any, root: x509.Certificate,
                    now: dt.datetime) -> tuple[dict[str, str], str]:
    """Check the signature and the chain leaf -> agency CA -> root; return leaf claims.

    Revocation (CRLs) is not checked here: the requesting node and the broker check it
    for every reply, and this example does not fetch CRLs.
    """
    if len(signed.cert_chain) != 2:
        raise BadReply("chain", f"{len(signed.cert_chain)} certificates, "
                                "expected leaf and agency CA")
    try:
        leaf = x509.load_der_x509_certificate(signed.cert_chain[0])
        ca = x509.load_der_x509_certificate(signed.cert_chain[1])
        claims, ca_claims = uri_claims(leaf), uri_claims(ca)
    except ValueError as e:
        raise BadReply("chain", f"certificate does not parse: {e}") from None
    signer = f"{claims.get('ori', '?')} ({claims.get('role', 'no role')})"
    key = leaf.public_key()
    if not (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"):
        raise BadReply("signature", "signer key is not ECDSA P-256", signer)
    try:
        key.verify(signed.signature, signing_input(signed.payload_type, signed.payload),
                   ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise BadReply("signature", "signature does not verify", signer) from None
    for cert, what in ((leaf, "signer"), (ca, "agency CA"), (root, "root")):
        _check_validity(cert, what, now, signer)
    if _is_ca(leaf) or not _is_ca(ca):
        raise BadReply("chain", "leaf must not be a CA and its issuer must be", signer)
    try:
        leaf.verify_directly_issued_by(ca)
        ca.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise BadReply("chain", "chain does not verify to the state root", signer) from None
    for name in AGENCY_CLAIMS:
        if claims.get(name) != ca_claims.get(name):
            raise BadReply("CA claims", f"leaf {name} {claims.get(name)!r} but agency CA "
                                        f"{ca_claims.get(name)!r}", signer)
    return claims, signer


def verify_reply(pb: ModuleType, result: Any, query: Any, root: x509.Certificate,
                 now: dt.datetime | None = None) -> tuple[str, Any, str]:
    """Verify `result.reply`; return ("answer" | "refusal", decoded message, signer ORI)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    signed = result.reply
    if signed.payload_type not in (ANSWER_TYPE, REFUSAL_TYPE):
        raise BadReply("payload type", f"{signed.payload_type!r} is no Answer or Refusal")
    claims, signer = verify_envelope(signed, root, now)
    if claims.get("role") != "node":
        raise BadReply("signer role", f"role {claims.get('role')!r}, not node", signer)
    if claims.get("ori") != result.ori:
        raise BadReply("signer ORI", f"signer is not the target {result.ori}", signer)
    ori = claims["ori"]
    kind = "answer" if signed.payload_type == ANSWER_TYPE else "refusal"
    try:
        msg = (pb.Answer if kind == "answer" else pb.Refusal).FromString(signed.payload)
    except DecodeError as e:
        raise BadReply("decode", f"{signed.payload_type} does not decode: {e}", signer) from None
    if msg.provider_ori != ori:
        raise BadReply("provider_ori", f"{msg.provider_ori!r} is not the signer", signer)
    if msg.query_id != query.query_id:
        raise BadReply("query_id", "reply is bound to another query", signer)
    if kind == "refusal":
        return kind, msg, ori
    if msg.requester_ori != query.requester_ori:
        raise BadReply("requester_ori", f"answer is for {msg.requester_ori!r}", signer)
    if msg.requester_user != query.requester_user:
        raise BadReply("requester_user", f"answer is for {msg.requester_user!r}", signer)
    for r in msg.reads:
        if r.plate != query.plate:
            raise BadReply("read plate", f"a read of plate {r.plate!r}", signer)
        if query.plate_state != "ANY" and r.plate_state != query.plate_state:
            raise BadReply("read plate_state", f"a read of state {r.plate_state!r}", signer)
        if not query.window_start <= r.captured_at <= query.window_end:
            raise BadReply("read window", f"a read at {rfc3339(r.captured_at)}", signer)
    if not msg.not_for_redissemination:
        raise BadReply("not_for_redissemination", "answer is not marked", signer)
    return kind, msg, ori


# ---------------------------------------------------------------- outcomes and output

@dataclass
class Outcome:
    """One target's outcome as shown; `reads` only from a verified Answer."""
    ori: str
    status: str  # ANSWERED, REFUSED, UNAVAILABLE, BAD_REPLY or MISSING
    line: str
    reads: list[Any] = field(default_factory=list)


def enum_name(enum: Any, value: int) -> str:
    try:
        return enum.Name(value)
    except ValueError:
        return str(value)


def rfc3339(unix: int) -> str:
    try:
        return dt.datetime.fromtimestamp(unix, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{unix} (Unix seconds)"


def evaluate(pb: ModuleType, result: Any, query: Any, root: x509.Certificate,
             now: dt.datetime | None = None) -> Outcome:
    """Turn one TargetResult into what the investigator may see."""
    def bad(why: str) -> Outcome:
        return Outcome(result.ori, "BAD_REPLY", f"BAD_REPLY: {why}")

    if result.ori not in query.targets:
        return bad(f"{result.ori} is not a target of this query")
    if result.status == pb.TARGET_STATUS_BAD_REPLY:
        return bad(f"{result.detail} (reported by {result.decided_by or 'the node'})")
    if result.status == pb.TARGET_STATUS_UNAVAILABLE:
        return Outcome(result.ori, "UNAVAILABLE", f"UNAVAILABLE: {result.detail}")
    if result.HasField("reply"):
        try:
            kind, msg, signer = verify_reply(pb, result, query, root, now)
        except BadReply as e:
            return bad(str(e))
        if kind == "answer":
            if result.status != pb.TARGET_STATUS_ANSWERED:
                return bad(f"status {enum_name(pb.TargetStatus, result.status)} "
                           f"but a signed Answer from {signer}")
            return Outcome(result.ori, "ANSWERED", f"ANSWERED {len(msg.reads)} reads "
                           f"(verified, signed by {signer})", list(msg.reads))
        if result.status != pb.TARGET_STATUS_REFUSED:
            return bad(f"status {enum_name(pb.TargetStatus, result.status)} "
                       f"but a signed Refusal from {signer}")
        return Outcome(result.ori, "REFUSED",
                       f"REFUSED {enum_name(pb.RefusalReason, msg.reason)} by "
                       f"{result.decided_by or signer}: {msg.detail} "
                       f"(signed refusal, verified)")
    if result.status == pb.TARGET_STATUS_REFUSED:  # refused before the target (the broker)
        return Outcome(result.ori, "REFUSED",
                       f"REFUSED {enum_name(pb.RefusalReason, result.reason)} by "
                       f"{result.decided_by}: {result.detail}")
    return bad(f"status {enum_name(pb.TargetStatus, result.status)} without a signed reply")


def print_outcome(o: Outcome) -> None:
    print(f"{o.ori}: {o.line}")
    for r in o.reads:
        print(f"    {rfc3339(r.captured_at)}  camera {r.camera_id}  "
              f"{r.latitude:.5f},{r.longitude:.5f}  plate_state {r.plate_state or '?'}")


def exit_code(outcomes: list[Outcome], expect_answer: bool = False) -> int:
    """0 if some target answered (with a read, under --expect-answer), else 3."""
    answered = [o for o in outcomes if o.status == "ANSWERED"]
    if expect_answer:
        answered = [o for o in answered if o.reads]
    return 0 if answered else 3


def refusal_code(err: grpc.RpcError) -> str:
    """The stable reason code from the `alpr-refusal-reason` trailer (never the text)."""
    for key, value in err.trailing_metadata() or ():
        if key == REFUSAL_TRAILER:
            return value.decode() if isinstance(value, bytes) else value
    return f"{err.code().name} (no {REFUSAL_TRAILER} trailer)"


# ---------------------------------------------------------------- the search

def search(args: argparse.Namespace) -> int:
    pb, pb_grpc = load_proto(Path(args.proto))
    demo = Path(args.dir)
    root_pem = read_file(demo / "pki" / "root.crt")
    try:
        root = x509.load_pem_x509_certificate(root_pem)
    except ValueError as e:
        raise ClientError(f"{demo / 'pki' / 'root.crt'}: {e}") from None
    inv = load_investigator(demo / "pki", args.from_ori)
    address = node_address(demo, args.from_ori)

    now = int(time.time())
    targets = args.target or ["CA0560100"]
    query = build_query(
        pb, inv, plate=args.plate, plate_state=args.state,
        window_start=now - args.days * 86_400, window_end=now, purpose=args.purpose,
        case_number=args.case_number, reason=args.reason, targets=targets,
        warrant_ref=args.warrant_ref, ttl=args.ttl, now=now)
    signed = seal(pb, inv, QUERY_TYPE, query.SerializeToString())
    print(f"{inv.user}@{inv.ori} searches {query.plate} ({query.plate_state}) at "
          f"{', '.join(targets)} via {address}, {rfc3339(query.window_start)} .. "
          f"{rfc3339(query.window_end)}, query {query.query_id.hex()}")

    creds = grpc.ssl_channel_credentials(
        root_certificates=root_pem, private_key=inv.key_pem, certificate_chain=inv.chain_pem)
    # The node certificate names IP 127.0.0.1 and DNS localhost, so no name override is
    # needed; a node reached by another name would need ("grpc.ssl_target_name_override",
    # "localhost") in the options here.
    with grpc.secure_channel(address, creds) as channel:
        stub = pb_grpc.NodeLocalStub(channel)
        try:
            response = stub.Search(pb.SearchRequest(signed_query=signed.SerializeToString()),
                                   timeout=args.timeout)
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.PERMISSION_DENIED,
                            grpc.StatusCode.INVALID_ARGUMENT):
                print(f"REFUSED {refusal_code(e)} by {inv.ori} (own node): {e.details()}")
                return 3
            hint = ""
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                hint = (" (is the node running? A TLS handshake error means a certificate "
                        "was refused: check it with alpr-pki inspect)")
            raise ClientError(f"search at {address} failed: {e.code().name}: "
                              f"{e.details()}{hint}") from None

    if response.query_id != query.query_id:
        print("warning: the response names another query id; each reply is checked anyway")
    outcomes = [evaluate(pb, r, query, root) for r in response.results]
    seen = {o.ori for o in outcomes}
    outcomes += [Outcome(t, "MISSING", "MISSING: no result for this target")
                 for t in targets if t not in seen]
    for o in outcomes:
        print_outcome(o)
    code = exit_code(outcomes, args.expect_answer)
    if code != 0 and args.expect_answer:
        print("--expect-answer: no target answered with a verified read", file=sys.stderr)
    return code


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="demo directory (written with --keep)")
    p.add_argument("--from", dest="from_ori", default="CA0340000",
                   help="the investigator's agency ORI (default: Sacramento County Sheriff)")
    p.add_argument("--target", action="append",
                   help="agency ORI to search, repeatable (default: CA0560100, Ventura)")
    p.add_argument("--plate", default="8ABC123")
    p.add_argument("--state", default="CA", help="plate state (two letters, or ANY)")
    p.add_argument("--days", type=int, default=7, help="look-back window in days")
    p.add_argument("--purpose", default="240", help="purpose code (240: motor vehicle theft)")
    p.add_argument("--case-number", default="SSD-2026-018832")
    p.add_argument("--reason", default="Silver Honda Civic stolen from a Fair Oaks "
                                       "driveway; the owner reported this plate on 11/20")
    p.add_argument("--warrant-ref", default="")
    p.add_argument("--ttl", type=int, default=300, help="query lifetime, seconds")
    p.add_argument("--timeout", type=float, default=30.0, help="call deadline, seconds")
    p.add_argument("--proto", default=str(DEFAULT_PROTO_ROOT),
                   help="directory holding alpr/v1/alpr.proto")
    p.add_argument("--expect-answer", action="store_true",
                   help="exit non-zero unless some target answered with at least one read")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        return search(parse_args(argv))
    except ClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` or the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
