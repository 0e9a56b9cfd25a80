"""C2SP signed notes, tlog checkpoints and tlog cosignatures (Ed25519 or SM2), byte-exact.

Owns: key ids (SHA-256(name || 0x0A || type || pubkey)[:4]), verifier-key
strings (``<name>+<hex key id>+<base64(type || pubkey)>``), signing and
strictly parsing/opening signed notes (c2sp.org/signed-note, as
golang.org/x/mod/sumdb/note.Open does it), the checkpoint body
(c2sp.org/tlog-checkpoint: origin, tree size, base64 root, optional extension
lines) and Ed25519 cosignatures (c2sp.org/tlog-cosignature, type 0x04, signed
message "cosignature/v1\\ntime <t>\\n" || checkpoint body).

The gm suite signs notes with SM2-with-SM3 (DER signatures). C2SP assigns no
byte to SM2, so gm keys use the spec's escape: signature type 0xff followed by
a long identifier, ``0xff || "dataexchange.gateway.cn/sm2-sm3-note"`` for checkpoint
signatures and ``0xff || "dataexchange.gateway.cn/sm2-sm3-cosignature/v1"`` for
witness cosignatures (same message as tlog-cosignature: timestamp || signature).
The key id is computed as the spec recommends, over that whole type string and
the 65-byte uncompressed SM2 point: SHA-256(name || 0x0A || type || 04||x||y)[:4]
(an identifier, not a security function). Callers keep passing the role
(``SIG_ED25519`` for "note signature", ``SIG_COSIGNATURE_V1`` for
"cosignature"); the key's suite picks the type bytes.

Does not own: keys (``gateway.crypto`` signs and verifies exact bytes), trust
decisions (callers pass the keys they trust), or storage.

Every verification failure raises VerificationFailed; a bad signature from a
known key rejects the whole note, unknown keys are ignored, as the spec says.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from gateway.crypto import (
    ED25519_SIGNATURE_LEN,
    GM,
    AnySigningKey,
    AnyVerifyKey,
    sha256,
)
from gateway.crypto import VerifyKey as Ed25519VerifyKey
from gateway.errors import CryptoFailure, InvalidArgument, VerificationFailed
from gateway.ledger.merkle import HASH_LEN
from gateway.limits import DEFAULT_LIMITS, Limits

SIG_ED25519: Final = 0x01
SIG_COSIGNATURE_V1: Final = 0x04
SIG_GM_NOTE: Final = b"\xffdataexchange.gateway.cn/sm2-sm3-note"
SIG_GM_COSIGNATURE: Final = b"\xffdataexchange.gateway.cn/sm2-sm3-cosignature/v1"
_GM_TYPES: Final = {SIG_ED25519: SIG_GM_NOTE, SIG_COSIGNATURE_V1: SIG_GM_COSIGNATURE}
# A property of the signed-note format, not a deployment limit: the reference
# implementation of C2SP signed-note (golang.org/x/mod/sumdb/note) refuses
# notes with more than 100 signatures, so no conforming note has more. The
# size of a note is a deployment limit (``Limits.max_note_bytes``).
MAX_SIGNATURES: Final = 100
EM_DASH_PREFIX: Final = "\u2014 "
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_U64 = struct.Struct(">Q")


# --------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------


def valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def type_bytes(sig_type: int, public: AnyVerifyKey) -> bytes:
    """The signature type identifier for a role and a key's suite."""
    if public.suite == "gm":
        return _GM_TYPES[sig_type]
    return bytes((sig_type,))


def key_id(name: str, sig_type: int, public: AnyVerifyKey) -> bytes:
    if not valid_name(name):
        raise InvalidArgument.expected("signed-note key name", "non-empty, no spaces or '+'", name)
    return sha256(name.encode("utf-8") + b"\n" + type_bytes(sig_type, public) + public.raw)[:4]


def vkey(name: str, public: AnyVerifyKey, sig_type: int = SIG_ED25519) -> str:
    """Verifier key string, as note.NewVerifier and every C2SP tool reads it."""
    kid = key_id(name, sig_type, public)
    material = base64.b64encode(type_bytes(sig_type, public) + public.raw).decode("ascii")
    return f"{name}+{kid.hex()}+{material}"


def _signature_shape_ok(key: AnyVerifyKey, signature: bytes) -> bool:
    if key.suite == "intl":
        return len(signature) == ED25519_SIGNATURE_LEN
    return 8 <= len(signature) <= 72


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted (name, key, signature type)."""

    name: str
    key: AnyVerifyKey
    sig_type: int = SIG_ED25519

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.key)

    def vkey(self) -> str:
        return vkey(self.name, self.key, self.sig_type)


def parse_vkey(text: str) -> NoteVerifier:
    """Parse ``<name>+<hex key id>+<base64(type || pubkey)>``; checks the key id."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise InvalidArgument.expected("verifier key", "<name>+<keyid>+<base64 key>", text)
    name, kid_hex, material_b64 = parts
    try:
        kid = bytes.fromhex(kid_hex)
        material = base64.b64decode(material_b64, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise InvalidArgument("verifier key: bad hex or base64") from exc
    key: AnyVerifyKey
    if len(kid_hex) != 8:
        raise InvalidArgument.expected("verifier key", "8 hex digits of key id", text)
    for role, prefix in _GM_TYPES.items():
        if material.startswith(prefix) and len(material) == len(prefix) + 65:
            key, sig_type = GM.verify_key(material[len(prefix) :]), role
            break
    else:
        if len(material) != 33:
            raise InvalidArgument.expected("verifier key", "33 key bytes (type || Ed25519)", text)
        sig_type = material[0]
        if sig_type not in (SIG_ED25519, SIG_COSIGNATURE_V1):
            raise InvalidArgument.expected("verifier key type", "0x01, 0x04 or 0xff", sig_type)
        key = Ed25519VerifyKey(material[1:])
    v = NoteVerifier(name, key, sig_type)
    if v.key_id != kid:
        raise InvalidArgument("verifier key: key id does not match name and key")
    return v


# --------------------------------------------------------------------------
# Notes
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes  # everything after the 4-byte key id

    def line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{EM_DASH_PREFIX}{self.name} {blob}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n") or "\n\n" in text or _CONTROL.search(text):
        raise InvalidArgument("note text: must end in a newline, no blank lines or controls")


def sign_note(text: str, name: str, key: AnySigningKey) -> str:
    """``text`` + blank line + one Ed25519 signature line."""
    _check_text(text)
    kid = key_id(name, SIG_ED25519, key.verify_key)
    sig = key.sign_raw(text.encode("utf-8"))
    return text + "\n" + NoteSignature(name, kid, sig).line()


def parse_note(
    msg: str | bytes, limits: Limits = DEFAULT_LIMITS
) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into text and signatures, syntax only (no crypto)."""
    if isinstance(msg, bytes):
        if len(msg) > limits.max_note_bytes:
            raise VerificationFailed("malformed note: too large")
        try:
            msg = msg.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VerificationFailed("malformed note: not UTF-8") from exc
    if len(msg) > limits.max_note_bytes or _CONTROL.search(msg):
        raise VerificationFailed("malformed note")
    split = msg.rfind("\n\n")
    if split < 0:
        raise VerificationFailed("malformed note: no signature block")
    text, sigblock = msg[: split + 1], msg[split + 2 :]
    if not sigblock.endswith("\n"):
        raise VerificationFailed("malformed note: unterminated signature line")
    lines = sigblock[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise VerificationFailed("malformed note: too many signatures")
    sigs: list[NoteSignature] = []
    for line in lines:
        if not line.startswith(EM_DASH_PREFIX):
            raise VerificationFailed("malformed note: bad signature line")
        rest = line[len(EM_DASH_PREFIX) :]
        name, sep, b64 = rest.partition(" ")
        if not sep or not valid_name(name) or " " in b64:
            raise VerificationFailed("malformed note: bad signature line")
        try:
            blob = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise VerificationFailed("malformed note: bad signature encoding") from exc
        if len(blob) < 5:
            raise VerificationFailed("malformed note: signature too short")
        sigs.append(NoteSignature(name, blob[:4], blob[4:]))
    return text, sigs


def open_note(
    msg: str | bytes, verifiers: Sequence[NoteVerifier], limits: Limits = DEFAULT_LIMITS
) -> tuple[str, list[NoteVerifier]]:
    """Verify a note against trusted Ed25519 verifiers (type 0x01).

    Returns the text and the verifiers whose signature verified. Unknown
    signatures are ignored; a bad signature from a known key rejects the note;
    no verified signature rejects the note.
    """
    text, sigs = parse_note(msg, limits)
    known = {(v.name, v.key_id): v for v in verifiers if v.sig_type == SIG_ED25519}
    ok: list[NoteVerifier] = []
    for s in sigs:
        v = known.get((s.name, s.key_id))
        if v is None:
            continue
        if not _signature_shape_ok(v.key, s.signature):
            raise VerificationFailed(f"invalid signature for key {s.name}+{s.key_id.hex()}")
        try:
            v.key.verify_raw(text.encode("utf-8"), s.signature)
        except CryptoFailure as exc:
            raise VerificationFailed(
                f"invalid signature for key {s.name}+{s.key_id.hex()}"
            ) from exc
        if v not in ok:
            ok.append(v)
    if not ok:
        raise VerificationFailed("note has no verifiable signatures")
    return text, ok


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or _CONTROL.search(self.origin):
            raise InvalidArgument.expected("checkpoint origin", "one non-empty line", self.origin)
        if self.size < 0:
            raise InvalidArgument.expected("checkpoint size", ">= 0", self.size)
        if len(self.root) != HASH_LEN:
            raise InvalidArgument.expected("checkpoint root length", HASH_LEN, len(self.root))
        for e in self.extensions:
            if not e or "\n" in e:
                raise InvalidArgument("checkpoint extension lines must be non-empty single lines")

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        if not body.endswith("\n"):
            raise VerificationFailed("malformed checkpoint: no final newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise VerificationFailed("malformed checkpoint: fewer than three lines")
        origin, size_s, root_s, *ext = lines
        if not re.fullmatch(r"0|[1-9][0-9]{0,19}", size_s) or int(size_s) >= 2**63:
            raise VerificationFailed("malformed checkpoint: bad tree size")
        try:
            root = base64.b64decode(root_s, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise VerificationFailed("malformed checkpoint: bad root hash") from exc
        if len(root) != HASH_LEN or base64.b64encode(root).decode() != root_s:
            raise VerificationFailed("malformed checkpoint: bad root hash")
        try:
            return cls(origin, int(size_s), root, tuple(ext))
        except InvalidArgument as exc:
            raise VerificationFailed(f"malformed checkpoint: {exc}") from exc


def sign_checkpoint(cp: Checkpoint, key: AnySigningKey) -> str:
    """Signed note whose key name is the origin."""
    return sign_note(cp.body(), cp.origin, key)


def open_checkpoint(
    note: str,
    origin: str,
    key: AnyVerifyKey | Sequence[AnyVerifyKey],
    limits: Limits = DEFAULT_LIMITS,
) -> Checkpoint:
    """Verify the log's signature (key name = origin) and parse the body.

    ``key`` may be several keys (a log's keys valid when the checkpoint was
    issued, across a rotation): a signature by any of them is accepted."""
    keys = tuple(key) if isinstance(key, (list, tuple)) else (key,)
    text, _ = open_note(note, [NoteVerifier(origin, k) for k in keys], limits)
    cp = Checkpoint.parse(text)
    if cp.origin != origin:
        raise VerificationFailed(f"checkpoint origin: expected {origin!r}, got {cp.origin!r}")
    return cp


# --------------------------------------------------------------------------
# Cosignatures (c2sp.org/tlog-cosignature, Ed25519, type 0x04)
# --------------------------------------------------------------------------


def cosigned_message(body: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode("utf-8")


def cosign(body: str, witness_name: str, key: AnySigningKey, timestamp: int) -> NoteSignature:
    """A witness's cosignature over a checkpoint body at ``timestamp`` (POSIX seconds)."""
    if not 0 <= timestamp < 2**63:
        raise InvalidArgument.expected("cosignature timestamp", "[0, 2**63)", timestamp)
    Checkpoint.parse(body)
    kid = key_id(witness_name, SIG_COSIGNATURE_V1, key.verify_key)
    sig = key.sign_raw(cosigned_message(body, timestamp))
    return NoteSignature(witness_name, kid, _U64.pack(timestamp) + sig)


def verify_cosignature(body: str, sig: NoteSignature, witness: NoteVerifier) -> int:
    """Check a cosignature line against a trusted witness; returns its timestamp."""
    expect_id = key_id(witness.name, SIG_COSIGNATURE_V1, witness.key)
    if sig.name != witness.name or sig.key_id != expect_id:
        raise VerificationFailed(f"cosignature is not from witness {witness.name}")
    if len(sig.signature) < 8 or not _signature_shape_ok(witness.key, sig.signature[8:]):
        raise VerificationFailed("malformed cosignature")
    (timestamp,) = _U64.unpack(sig.signature[:8])
    if timestamp >= 2**63:
        raise VerificationFailed("malformed cosignature: timestamp out of range")
    try:
        witness.key.verify_raw(cosigned_message(body, timestamp), sig.signature[8:])
    except CryptoFailure as exc:
        raise VerificationFailed(f"invalid cosignature from {witness.name}") from exc
    return int(timestamp)


def cosignatures_in(
    note: str, witnesses: Mapping[str, AnyVerifyKey], limits: Limits = DEFAULT_LIMITS
) -> dict[str, int]:
    """Witness name -> timestamp for every valid cosignature in ``note`` by a known witness."""
    text, sigs = parse_note(note, limits)
    out: dict[str, int] = {}
    for s in sigs:
        key = witnesses.get(s.name)
        if key is None:
            continue
        w = NoteVerifier(s.name, key, SIG_COSIGNATURE_V1)
        if s.key_id != w.key_id:
            continue
        out[s.name] = verify_cosignature(text, s, w)
    return out
