"""A gateway's own key material on disk.

Owns: generating a gateway's keys (``gateway keygen``), writing them to a key
directory with owner-only permissions, loading them back with errors that name
the missing or bad file, and the public member descriptor (``public.json``)
that the federation authority puts into the trust bundle.

Does not own: any cryptography (every key and certificate comes from the
recipes in ``gateway.crypto``), the trust bundle (``gateway.trust``), or
deciding which peers to trust.

Key directory layout (intl suite; ``gateway keygen --suite gm`` writes SM2 keys
as ``sm2:`` + base64(d || 04 || x || y) instead, see ``gateway.crypto.gm``)::

    signing.key     Ed25519 seed, base64 (0600)  signs peer envelopes
    ledger.key      Ed25519 seed, base64 (0600)  signs ledger checkpoints
    witness.key     Ed25519 seed, base64 (0600)  cosigns peers' checkpoints (witnessing)
    seal.key        X25519 private key, base64 (0600)  payloads are sealed to it
    pseudonym.key   32 random bytes, base64 (0600)  per-gateway pseudonymisation secret
    tls.key         PEM private key (0600)
    tls.crt         PEM self-signed leaf certificate, CA:false (pinned in the trust bundle)
    service-ca.key  PEM private key (0600) of the local service-system CA
    service-ca.crt  PEM CA certificate: issues service systems' client certificates;
                    trusted by the service port only, never by the peer port
    public.json     the public descriptor (no endpoint, no datasets)

All keys are of one suite (the federation's). The Ed25519 keys are separate on purpose: a compromised or misused peer
signing key must not be able to forge ledger checkpoints, and vice versa; the
witness key only cosigns others' checkpoints (C2SP asks for a distinct
cosigner key). ``rotate_keys`` replaces any of them, keeping the old private
files as ``<file>.retired-<UTC time>`` for the overlap window; it stages the
new files and commits with a journal, so an error or a crash midway never
leaves a half-rotated set in use (``finish_rotation`` completes a crashed one).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
import stat
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway import crypto, identifiers
from gateway.crypto import (
    AnySealPrivateKey,
    AnySealPublicKey,
    AnySigningKey,
    AnyVerifyKey,
    Rng,
    TlsIdentity,
    b64,
    cert_dns_names,
    cert_fingerprint,
    digest_equal,
    make_ca_identity,
    make_tls_identity,
    open_sealed,
    sha256_hex,
    tls_key_matches_cert,
    unb64,
)
from gateway.durable import fsync_path
from gateway.errors import ConfigurationError, CryptoFailure, InvalidArgument, StorageFailure
from gateway.identifiers import JurisdictionCode
from gateway.limits import DEFAULT_LIMITS, Limits

SIGNING_FILE: Final = "signing.key"
LEDGER_FILE: Final = "ledger.key"
WITNESS_FILE: Final = "witness.key"
SEAL_FILE: Final = "seal.key"
PSEUDONYM_FILE: Final = "pseudonym.key"
TLS_KEY_FILE: Final = "tls.key"
TLS_CERT_FILE: Final = "tls.crt"
PUBLIC_FILE: Final = "public.json"
SERVICE_CA_KEY_FILE: Final = "service-ca.key"
SERVICE_CA_CERT_FILE: Final = "service-ca.crt"

PRIVATE_FILES: Final = (
    SIGNING_FILE,
    LEDGER_FILE,
    WITNESS_FILE,
    SEAL_FILE,
    PSEUDONYM_FILE,
    TLS_KEY_FILE,
)
ALL_FILES: Final = (
    *PRIVATE_FILES,
    TLS_CERT_FILE,
    PUBLIC_FILE,
    SERVICE_CA_KEY_FILE,
    SERVICE_CA_CERT_FILE,
)

# A rule of the value types that carry a display name (descriptors, bundle
# members): every gateway must accept the same names, so it is not configurable.
MAX_NAME_LEN: Final = 128
PSEUDONYM_KEY_LEN: Final = 32
_DNS_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME: Final = re.compile(rf"^{_DNS_LABEL}(?:\.{_DNS_LABEL})*$")
# Control, format (bidi overrides, zero-width), line/paragraph separators,
# unassigned, private use, surrogates: never in a display name.
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp"})


def tls_server_name(jurisdiction: str) -> str:
    """The TLS name every gateway certificate carries (ssl_target_name_override)."""
    return f"gw-{jurisdiction}"


def key_id(key: AnyVerifyKey | AnySealPublicKey) -> str:
    """Short public fingerprint of a key: first 16 hex digits of SHA-256(raw)
    (an identifier in both suites)."""
    return sha256_hex(key.raw)[:16]


def check_name(name: str) -> str:
    """A display name (gateway or federation): non-empty, bounded, no invisible tricks."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument.expected("name", "a non-empty name", name)
    if len(name) > MAX_NAME_LEN:
        raise InvalidArgument.expected("name length", f"<= {MAX_NAME_LEN}", len(name))
    if any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in name):
        raise InvalidArgument(
            "name: contains control, format (e.g. bidi override) or line-separator characters"
        )
    return name


@dataclass(frozen=True)
class GatewayKeys:
    """All of one gateway's key material. ``repr`` never shows private keys."""

    jurisdiction: str
    name: str
    signing: AnySigningKey  # Ed25519 or SM2, signs peer envelopes
    ledger: AnySigningKey  # signs ledger checkpoints and witness cosignatures
    seal: AnySealPrivateKey  # X25519 or SM2, payloads are sealed to its public key
    tls: TlsIdentity  # key_pem, cert_pem
    pseudonym_key: bytes  # 32 random bytes, per-gateway pseudonymisation secret
    # Ed25519, cosigns peers' checkpoints; None for a key directory made
    # before there was one (the ledger key cosigns then).
    witness: AnySigningKey | None = None

    def __post_init__(self) -> None:
        identifiers.jurisdiction(self.jurisdiction, "jurisdiction code")
        check_name(self.name)
        if len(self.pseudonym_key) != PSEUDONYM_KEY_LEN:
            raise InvalidArgument.expected(
                "pseudonym key length", PSEUDONYM_KEY_LEN, len(self.pseudonym_key)
            )
        cert_fingerprint(self.tls.cert_pem)  # must parse
        if not self.signing.suite == self.ledger.suite == self.seal.suite:
            raise InvalidArgument(
                "gateway keys: signing, ledger and seal keys are of different suites"
            )

    @property
    def suite(self) -> crypto.Suite:
        """The cipher suite of every key here (the federation's)."""
        return crypto.suite_of(self.signing)

    def with_sm2_user_id(self, user_id: str) -> GatewayKeys:
        """The same keys signing with the SM2 signer id a gm trust bundle names
        ("" is the standard default); intl keys are returned unchanged."""
        if not user_id:
            return self
        uid = user_id.encode("ascii")
        return dataclasses.replace(
            self,
            signing=self.signing.with_user_id(uid),
            ledger=self.ledger.with_user_id(uid),
            witness=self.witness.with_user_id(uid) if self.witness else None,
        )

    def __repr__(self) -> str:
        return f"GatewayKeys(jurisdiction={self.jurisdiction!r}, name={self.name!r}, <redacted>)"

    @property
    def tls_fingerprint(self) -> str:
        return cert_fingerprint(self.tls.cert_pem)

    @property
    def cosigner(self) -> AnySigningKey:
        """The key this gateway cosigns peers' checkpoints with."""
        return self.witness or self.ledger

    def public_descriptor(self) -> dict[str, str]:
        """The member descriptor without endpoint and datasets (``public.json``)."""
        return {
            "jurisdiction": self.jurisdiction,
            "name": self.name,
            "signing_key": self.signing.verify_key.encode(),
            "ledger_key": self.ledger.verify_key.encode(),
            **({"witness_key": self.witness.verify_key.encode()} if self.witness else {}),
            "seal_key": self.seal.public_key.encode(),
            "tls_cert_pem": self.tls.cert_pem.decode("ascii"),
            "tls_fingerprint": self.tls_fingerprint,
        }


class PublicDescriptor(BaseModel):
    """Schema of ``public.json``; also read by ``gateway federation add-member``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    jurisdiction: JurisdictionCode
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LEN)]
    signing_key: str
    ledger_key: str
    seal_key: str
    tls_cert_pem: str  # bounded by the file's own limit (``Limits.max_key_file_bytes``)
    tls_fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    witness_key: str | None = None

    def witness(self, source: str) -> AnyVerifyKey | None:
        """The witness (cosigner) public key, if the descriptor has one."""
        if self.witness_key is None:
            return None
        try:
            return self.suite.decode_verify_key(self.witness_key, "witness_key")
        except InvalidArgument as exc:
            raise type(exc)(f"{source}: {exc}") from exc

    @property
    def suite(self) -> crypto.Suite:
        """The suite the signing key names (gm keys are ``sm2:``-tagged)."""
        return crypto.suite(crypto.suite_of_text(self.signing_key))

    def keys(self, source: str) -> tuple[AnyVerifyKey, AnyVerifyKey, AnySealPublicKey]:
        """Decode and check the three public keys, all of the signing key's suite."""
        suite = self.suite
        try:
            return (
                suite.decode_verify_key(self.signing_key, "signing_key"),
                suite.decode_verify_key(self.ledger_key, "ledger_key"),
                suite.decode_seal_public_key(self.seal_key, "seal_key"),
            )
        except InvalidArgument as exc:
            raise type(exc)(f"{source}: {exc}") from exc


def parse_public_descriptor(data: bytes, source: str) -> PublicDescriptor:
    """Parse and check a ``public.json`` (keys decode, fingerprint matches cert)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidArgument(f"{source}: not a UTF-8 JSON document") from exc
    try:
        desc = PublicDescriptor.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InvalidArgument(f"{source}: field {field}: {first['msg']}") from exc
    check_name(desc.name)
    desc.keys(source)
    desc.witness(source)
    try:
        actual = cert_fingerprint(desc.tls_cert_pem.encode("ascii"))
    except (UnicodeEncodeError, InvalidArgument) as exc:
        raise InvalidArgument(f"{source}: tls_cert_pem: not a PEM X.509 certificate") from exc
    if not digest_equal(actual, desc.tls_fingerprint):
        raise InvalidArgument.expected(
            f"{source}: tls_fingerprint",
            f"SHA-256 of tls_cert_pem ({actual})",
            desc.tls_fingerprint,
        )
    return desc


# --------------------------------------------------------------------------
# File I/O (the edge)
# --------------------------------------------------------------------------


def load_public_descriptor(path: Path, limits: Limits = DEFAULT_LIMITS) -> PublicDescriptor:
    """Read and check a ``public.json`` (or ``<dir>/public.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / PUBLIC_FILE
    return parse_public_descriptor(
        _read(path, private=False, strict_permissions=False, limits=limits), str(path)
    )


def write_file_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder,
    created with ``mode`` from the start (no window where a secret is readable),
    fsynced, then renamed into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate_keys(
    out_dir: Path,
    jurisdiction: str,
    name: str,
    hostnames: Sequence[str] = ("localhost",),
    rng: Rng = os.urandom,
    now: _dt.datetime | None = None,
    force: bool = False,
    suite: str = crypto.DEFAULT_SUITE,
) -> GatewayKeys:
    """Make a gateway's keys of ``suite`` and write them to ``out_dir`` (created 0700 if absent).

    Refuses (InvalidArgument) if any key file already exists, unless ``force``.
    The TLS certificate names ``gw-<jurisdiction>`` plus ``hostnames`` as DNS
    SANs and 127.0.0.1 / ::1 as IP SANs.
    """
    identifiers.jurisdiction(jurisdiction, "jurisdiction code")
    check_name(name)
    cs = crypto.suite(suite)
    for host in hostnames:
        if not isinstance(host, str) or len(host) > 253 or not _DNS_NAME.fullmatch(host):
            raise InvalidArgument.expected("TLS hostname", "an ASCII DNS name", host)
    out_dir = Path(out_dir)
    if not force:
        existing = [f for f in ALL_FILES if (out_dir / f).exists()]
        if existing:
            raise InvalidArgument(
                f"{out_dir}: refusing to overwrite existing key files ({', '.join(existing)}); "
                "pass --force to replace them"
            )
    server_name = tls_server_name(jurisdiction)
    dns = [server_name, *(h for h in hostnames if h != server_name)]
    keys = GatewayKeys(
        jurisdiction=jurisdiction,
        name=name,
        signing=cs.generate_signing_key(rng),
        ledger=cs.generate_signing_key(rng),
        seal=cs.generate_seal_key(rng),
        tls=make_tls_identity(server_name, dns, now=now),
        pseudonym_key=rng(PSEUDONYM_KEY_LEN),
        witness=cs.generate_signing_key(rng),
    )
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = 0o600
        for file, key in ((SIGNING_FILE, keys.signing), (LEDGER_FILE, keys.ledger)):
            write_file_atomic(out_dir / file, _key_line(cs, key.secret()), secret)
        assert keys.witness is not None
        write_file_atomic(out_dir / WITNESS_FILE, _key_line(cs, keys.witness.secret()), secret)
        write_file_atomic(out_dir / SEAL_FILE, _key_line(cs, keys.seal.secret()), secret)
        write_file_atomic(out_dir / PSEUDONYM_FILE, _b64_line(keys.pseudonym_key), secret)
        write_file_atomic(out_dir / TLS_KEY_FILE, keys.tls.key_pem, secret)
        write_file_atomic(out_dir / TLS_CERT_FILE, keys.tls.cert_pem, 0o644)
        public = json.dumps(keys.public_descriptor(), ensure_ascii=False, indent=2) + "\n"
        write_file_atomic(out_dir / PUBLIC_FILE, public.encode("utf-8"), 0o644)
        _write_service_ca(out_dir, jurisdiction, now)
    except OSError as exc:
        raise StorageFailure(f"{out_dir}: cannot write key files: {exc.strerror}") from exc
    return keys


def _write_service_ca(out_dir: Path, jurisdiction: str, now: _dt.datetime | None) -> TlsIdentity:
    ca = make_ca_identity(f"service systems of gw-{jurisdiction}", now=now)
    write_file_atomic(out_dir / SERVICE_CA_KEY_FILE, ca.key_pem, 0o600)
    write_file_atomic(out_dir / SERVICE_CA_CERT_FILE, ca.cert_pem, 0o644)
    return ca


def service_ca_cert(key_dir: Path, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The service-system CA certificate (the service port's only client root)."""
    try:
        return _read(
            Path(key_dir) / SERVICE_CA_CERT_FILE,
            private=False,
            strict_permissions=False,
            limits=limits,
        )
    except InvalidArgument as exc:  # our own file: the operator's to fix
        raise ConfigurationError(exc.message) from exc


def load_service_ca(
    key_dir: Path, jurisdiction: str, create: bool = False, limits: Limits = DEFAULT_LIMITS
) -> TlsIdentity:
    """The service-system CA (key and certificate); with ``create``, make one
    in a key directory written before there was a separate CA. A bad or
    mismatched file is a ``ConfigurationError`` (the gateway's own files)."""
    key_dir = Path(key_dir)
    if create and not (key_dir / SERVICE_CA_CERT_FILE).exists():
        try:
            return _write_service_ca(key_dir, jurisdiction, None)
        except OSError as exc:
            raise StorageFailure(f"{key_dir}: cannot write the service CA: {exc.strerror}") from exc
    try:
        key = _read(
            key_dir / SERVICE_CA_KEY_FILE, private=True, strict_permissions=True, limits=limits
        )
    except InvalidArgument as exc:
        raise ConfigurationError(exc.message) from exc
    cert = service_ca_cert(key_dir, limits)
    if not tls_key_matches_cert(key, cert):
        raise ConfigurationError(
            f"{key_dir / SERVICE_CA_KEY_FILE} is not the private key of "
            f"{key_dir / SERVICE_CA_CERT_FILE}"
        )
    return TlsIdentity(key_pem=key, cert_pem=cert)


def _b64_line(raw: bytes) -> bytes:
    return (b64(raw) + "\n").encode("ascii")


def _key_line(suite: crypto.Suite, secret: bytes) -> bytes:
    return (suite.encode_secret(secret) + "\n").encode("ascii")


def _read(path: Path, private: bool, strict_permissions: bool, limits: Limits) -> bytes:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{path}: not a regular file")
        if private and strict_permissions and st.st_mode & 0o077:
            raise InvalidArgument(
                f"{path}: private key file is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 on it"
            )
        if st.st_size > limits.max_key_file_bytes:
            raise InvalidArgument.expected(
                f"{path}: size", f"<= {limits.max_key_file_bytes} bytes", st.st_size
            )
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise StorageFailure(f"{path}: key file is missing (run `gateway keygen`)") from exc
    except OSError as exc:
        raise StorageFailure(f"{path}: cannot read key file: {exc.strerror}") from exc


def _read_line(path: Path, strict_permissions: bool, limits: Limits) -> str:
    data = _read(path, private=True, strict_permissions=strict_permissions, limits=limits)
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{path}: expected one line of base64, found other bytes") from exc


def _read_secret(
    path: Path, suite: crypto.Suite, strict_permissions: bool, limits: Limits
) -> bytes:
    return suite.decode_secret(_read_line(path, strict_permissions, limits), str(path))


def _read_raw32(path: Path, strict_permissions: bool, limits: Limits) -> bytes:
    raw = unb64(_read_line(path, strict_permissions, limits), str(path))
    if len(raw) != 32:
        raise InvalidArgument.expected(f"{path}: decoded key length", 32, len(raw))
    return raw


def load_keys(
    key_dir: Path, strict_permissions: bool = True, limits: Limits = DEFAULT_LIMITS
) -> GatewayKeys:
    """Load a key directory written by :func:`generate_keys`.

    Checks that ``public.json`` matches the private keys and the certificate,
    and (with ``strict_permissions``, the default) that private key files are
    not readable by group or others. Raises StorageFailure for a missing or
    unreadable file and ConfigurationError for a bad one or for files that do
    not match each other, naming the file: the gateway's own keys are its
    operator's configuration, never a caller's input.
    """
    try:
        return _load_keys(Path(key_dir), strict_permissions, limits)
    except InvalidArgument as exc:
        raise ConfigurationError(exc.message) from exc


def _load_keys(key_dir: Path, strict_permissions: bool, limits: Limits) -> GatewayKeys:
    if (key_dir / ROTATION_JOURNAL).exists():
        raise InvalidArgument(
            f"{key_dir}: a key rotation was interrupted there (its {ROTATION_JOURNAL} is "
            "left): run `gateway keygen --rotate` on it again to finish it"
        )
    # The signing key's own line names the suite; the other keys must agree.
    first = _read_line(key_dir / SIGNING_FILE, strict_permissions, limits)
    cs = crypto.suite(crypto.suite_of_text(first))

    def secret(file: str) -> bytes:
        return _read_secret(key_dir / file, cs, strict_permissions, limits)

    signing = cs.signing_key(secret(SIGNING_FILE))
    ledger = cs.signing_key(secret(LEDGER_FILE))
    witness = cs.signing_key(secret(WITNESS_FILE)) if (key_dir / WITNESS_FILE).exists() else None
    seal = cs.seal_private_key(secret(SEAL_FILE))
    pseudonym = _read_raw32(key_dir / PSEUDONYM_FILE, strict_permissions, limits)
    tls_key = _read(
        key_dir / TLS_KEY_FILE, private=True, strict_permissions=strict_permissions, limits=limits
    )
    if b"PRIVATE KEY-----" not in tls_key:
        raise InvalidArgument(f"{key_dir / TLS_KEY_FILE}: expected a PEM private key")
    cert_path = key_dir / TLS_CERT_FILE
    cert = _read(cert_path, private=False, strict_permissions=False, limits=limits)
    try:
        fingerprint = cert_fingerprint(cert)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{cert_path}: {exc}") from exc
    if not tls_key_matches_cert(tls_key, cert):
        raise InvalidArgument(
            f"{key_dir / TLS_KEY_FILE} is not the private key of {cert_path}; "
            "regenerate both with `gateway keygen --force`"
        )
    public_path = key_dir / PUBLIC_FILE
    desc = parse_public_descriptor(
        _read(public_path, private=False, strict_permissions=False, limits=limits), str(public_path)
    )
    sign_pub, ledger_pub, seal_pub = desc.keys(str(public_path))
    mismatches: list[tuple[str, Any, Any]] = [
        ("signing_key", sign_pub, signing.verify_key),
        ("ledger_key", ledger_pub, ledger.verify_key),
        ("seal_key", seal_pub, seal.public_key),
    ]
    listed_witness = desc.witness(str(public_path))
    if (listed_witness is None) != (witness is None):
        raise InvalidArgument(
            f"{public_path}: witness_key and {WITNESS_FILE} must both be present or both absent"
        )
    if listed_witness is not None and witness is not None:
        mismatches.append(("witness_key", listed_witness, witness.verify_key))
    for field, listed, derived in mismatches:
        if not digest_equal(listed.raw, derived.raw):
            raise InvalidArgument(
                f"{public_path}: {field} does not match the private key in {key_dir}"
            )
    if not digest_equal(desc.tls_fingerprint, fingerprint):
        raise InvalidArgument.expected(
            f"{public_path}: tls_fingerprint",
            f"fingerprint of {TLS_CERT_FILE} ({fingerprint})",
            desc.tls_fingerprint,
        )
    return GatewayKeys(
        jurisdiction=desc.jurisdiction,
        name=desc.name,
        signing=signing,
        ledger=ledger,
        seal=seal,
        tls=TlsIdentity(key_pem=tls_key, cert_pem=cert),
        pseudonym_key=pseudonym,
        witness=witness,
    )


# Key kinds (``gateway.keyring``) -> the files holding the private half.
ROTATABLE: Final[dict[str, tuple[str, ...]]] = {
    "envelope": (SIGNING_FILE,),
    "ledger": (LEDGER_FILE,),
    "witness": (WITNESS_FILE,),
    "sealing": (SEAL_FILE,),
    "tls": (TLS_KEY_FILE, TLS_CERT_FILE),
}


def _retired_stamp(key_dir: Path, names: Sequence[str], now: _dt.datetime) -> str:
    """The suffix the files being rotated are kept under: the UTC time, and a
    counter when a backup of that second already exists (two rotations in one
    second must not overwrite the first one's retired private key)."""
    base = now.astimezone(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    stamp, n = base, 0
    while any((key_dir / f"{name}.retired-{stamp}").exists() for name in names):
        n += 1
        stamp = f"{base}-{n}"
    return stamp


def rotate_keys(
    key_dir: Path,
    kinds: Sequence[str],
    rng: Rng = os.urandom,
    now: _dt.datetime | None = None,
) -> GatewayKeys:
    """Replace the keys of ``kinds`` in ``key_dir`` with new ones.

    The old private files are kept next to the new ones as
    ``<file>.retired-<UTC time>`` (same file, so same mode), ``public.json`` is
    rewritten, and everything else (pseudonym key, service-system CA) is
    unchanged. A new TLS certificate carries the old one's DNS names. The
    federation authority then runs ``gateway federation rotate-keys`` with the
    new ``public.json``.

    Crash-safe in three steps. (1) Every new file is written and fsynced under
    a temporary name in ``key_dir`` (``.<file>.rotating``); the old set is
    untouched, so a failure here leaves it in use (a rerun removes the
    leftovers). (2) A journal (``.rotation.json``) naming the files is written:
    from then on the rotation is committed. (3) Each old file is linked to its
    retired name (it stays in place meanwhile) and the new one renamed over
    it, ``public.json`` last; then the journal is removed. An error during (3)
    puts the old files back (the directory holds the old, complete set again);
    a crash during it leaves the journal, ``load_keys`` refuses the mixed set
    and ``finish_rotation`` (run by ``gateway keygen --rotate``) completes it.
    """
    unknown = [k for k in kinds if k not in ROTATABLE]
    if unknown or not kinds:
        raise InvalidArgument.expected("key kinds", " | ".join(ROTATABLE), ",".join(kinds))
    key_dir = Path(key_dir)
    old = load_keys(key_dir)  # refuses a directory with an unfinished rotation
    old_public = (key_dir / PUBLIC_FILE).read_bytes()
    cs = old.suite
    now = now or _dt.datetime.now(_dt.UTC)
    new = GatewayKeys(
        jurisdiction=old.jurisdiction,
        name=old.name,
        signing=cs.generate_signing_key(rng) if "envelope" in kinds else old.signing,
        ledger=cs.generate_signing_key(rng) if "ledger" in kinds else old.ledger,
        seal=cs.generate_seal_key(rng) if "sealing" in kinds else old.seal,
        tls=(
            make_tls_identity(
                tls_server_name(old.jurisdiction), cert_dns_names(old.tls.cert_pem), now=now
            )
            if "tls" in kinds
            else old.tls
        ),
        pseudonym_key=old.pseudonym_key,
        witness=cs.generate_signing_key(rng)
        if "witness" in kinds or old.witness is None
        else old.witness,
    )
    rotated = [n for k in kinds for n in ROTATABLE[k]]
    secret = 0o600
    contents: dict[str, tuple[bytes, int]] = {
        SIGNING_FILE: (_key_line(cs, new.signing.secret()), secret),
        LEDGER_FILE: (_key_line(cs, new.ledger.secret()), secret),
        SEAL_FILE: (_key_line(cs, new.seal.secret()), secret),
        TLS_KEY_FILE: (new.tls.key_pem, secret),
        TLS_CERT_FILE: (new.tls.cert_pem, 0o644),
    }
    if new.witness is not None:
        contents[WITNESS_FILE] = (_key_line(cs, new.witness.secret()), secret)
    # The files of the rotated kinds, a witness key made for a directory that had
    # none, then public.json (last: until it is in place the old one is).
    files = [n for n in contents if n in rotated or not (key_dir / n).exists()]
    public = json.dumps(new.public_descriptor(), ensure_ascii=False, indent=2) + "\n"
    contents[PUBLIC_FILE] = (public.encode("utf-8"), 0o644)
    files.append(PUBLIC_FILE)
    journal = _RotationJournal(
        stamp=_retired_stamp(key_dir, rotated, now),
        kinds=tuple(kinds),
        files=tuple(files),
        retire=tuple(n for n in files if n in rotated and (key_dir / n).exists()),
    )
    try:
        _remove_staged(key_dir)  # an earlier attempt's, never committed
        for name in files:  # (1)
            data, mode = contents[name]
            write_file_atomic(_staged(key_dir, name), data, mode)
        fsync_path(key_dir)
        write_file_atomic(key_dir / ROTATION_JOURNAL, journal.encode(), 0o600)  # (2)
        fsync_path(key_dir)
    except OSError as exc:
        _remove_staged(key_dir)
        raise StorageFailure(
            f"{key_dir}: cannot write the new key files ({exc.strerror}); the old keys are "
            "unchanged and in use"
        ) from exc
    try:
        _install_rotation(key_dir, journal)  # (3)
    except OSError as exc:
        try:
            _undo_rotation(key_dir, journal, old_public)
        except OSError as undo:
            raise StorageFailure(
                f"{key_dir}: key rotation failed ({exc.strerror}) and could not be undone "
                f"({undo.strerror}); run the same `gateway keygen --rotate` again to finish it"
            ) from exc
        raise StorageFailure(
            f"{key_dir}: cannot rotate key files ({exc.strerror}); the old keys were put back "
            "and are in use"
        ) from exc
    return load_keys(key_dir)


ROTATION_JOURNAL: Final = ".rotation.json"
_STAGED: Final = ".rotating"


@dataclass(frozen=True)
class _RotationJournal:
    """A committed rotation: which files replace which, the retired suffix."""

    stamp: str
    kinds: tuple[str, ...]
    files: tuple[str, ...]  # in the order they are put in place
    retire: tuple[str, ...]  # of ``files``, those whose old version is kept

    def encode(self) -> bytes:
        doc = {
            "stamp": self.stamp,
            "kinds": list(self.kinds),
            "files": list(self.files),
            "retire": list(self.retire),
        }
        return (json.dumps(doc) + "\n").encode("ascii")

    @classmethod
    def read(cls, key_dir: Path, limits: Limits) -> _RotationJournal:
        path = key_dir / ROTATION_JOURNAL
        raw = _read(path, private=False, strict_permissions=False, limits=limits)
        allowed = set(ALL_FILES)
        try:
            doc = json.loads(raw.decode("utf-8"))
            journal = cls(
                str(doc["stamp"]),
                tuple(str(k) for k in doc["kinds"]),
                tuple(str(f) for f in doc["files"]),
                tuple(str(f) for f in doc["retire"]),
            )
            if not re.fullmatch(r"[0-9TZ-]{1,40}", journal.stamp):
                raise ValueError("stamp")
            if not set(journal.files) <= allowed or not set(journal.retire) <= set(journal.files):
                raise ValueError("files")
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"{path}: unreadable key-rotation journal; restore the key folder from its backup"
            ) from exc
        return journal


def _staged(key_dir: Path, name: str) -> Path:
    return key_dir / f".{name}{_STAGED}"


def _remove_staged(key_dir: Path) -> None:
    for name in ALL_FILES:
        _staged(key_dir, name).unlink(missing_ok=True)


def _install_rotation(key_dir: Path, journal: _RotationJournal) -> None:
    """Step (3), idempotent (a rerun after a crash repeats it): for each file
    still staged, keep the old one under its retired name (a second link: the
    old file stays in place until the rename) and rename the new one over it."""
    for name in journal.files:
        staged = _staged(key_dir, name)
        if not staged.exists():
            continue  # already in place
        target = key_dir / name
        retired = key_dir / f"{name}.retired-{journal.stamp}"
        if name in journal.retire and target.exists() and not retired.exists():
            os.link(target, retired)
        os.replace(staged, target)
    fsync_path(key_dir)
    (key_dir / ROTATION_JOURNAL).unlink()
    fsync_path(key_dir)


def _undo_rotation(key_dir: Path, journal: _RotationJournal, old_public: bytes) -> None:
    """After an error in step (3): the old files back in place, nothing staged,
    no journal: the directory holds the set it held before."""
    for name in journal.files:
        staged = _staged(key_dir, name)
        target = key_dir / name
        retired = key_dir / f"{name}.retired-{journal.stamp}"
        if staged.exists():  # not replaced: the old file is still in place
            staged.unlink()
            retired.unlink(missing_ok=True)
        elif name == PUBLIC_FILE:
            write_file_atomic(target, old_public, 0o644)
        elif name in journal.retire:
            os.replace(retired, target)
        else:  # new in this rotation (a witness key for a directory without one)
            target.unlink(missing_ok=True)
    (key_dir / ROTATION_JOURNAL).unlink(missing_ok=True)
    fsync_path(key_dir)


def finish_rotation(key_dir: Path, limits: Limits = DEFAULT_LIMITS) -> tuple[str, ...] | None:
    """Complete a rotation a crash interrupted after it was committed (the kinds
    it rotated), or None if there was none; a rotation interrupted before it
    was committed is forgotten (its temporary files removed, the old keys stay)."""
    key_dir = Path(key_dir)
    if not (key_dir / ROTATION_JOURNAL).exists():
        try:
            _remove_staged(key_dir)
        except OSError as exc:
            raise StorageFailure(f"{key_dir}: cannot remove temporary key files: {exc}") from exc
        return None
    journal = _RotationJournal.read(key_dir, limits)
    try:
        _install_rotation(key_dir, journal)
    except OSError as exc:
        raise StorageFailure(
            f"{key_dir}: cannot finish the interrupted key rotation: {exc.strerror}"
        ) from exc
    return journal.kinds


def _read_seal_key(path: Path, strict_permissions: bool, limits: Limits) -> AnySealPrivateKey:
    """A sealing key file of either suite (its own line names the suite)."""
    line = _read_line(path, strict_permissions, limits)
    cs = crypto.suite(crypto.suite_of_text(line))
    return cs.seal_private_key(cs.decode_secret(line, str(path)))


def load_retired_seal_keys(
    key_dir: Path, strict_permissions: bool = True, limits: Limits = DEFAULT_LIMITS
) -> list[AnySealPrivateKey]:
    """This gateway's sealing keys retired by ``rotate_keys`` (newest first); a
    bad file is a ``ConfigurationError`` (the gateway's own files)."""
    paths = sorted(Path(key_dir).glob(f"{SEAL_FILE}.retired-*"), reverse=True)
    try:
        return [_read_seal_key(p, strict_permissions, limits) for p in paths]
    except InvalidArgument as exc:
        raise ConfigurationError(exc.message) from exc


class SealKeys:
    """This gateway's X25519 private keys for opening what peers sealed to it.

    The current key first, then keys retired by a rotation (a peer still on
    the previous trust bundle seals to the old key during the overlap). The
    keys live in memory: a payload no key opens costs no file I/O. The bureau
    may rotate the keys on disk while this process runs (peers already on the
    new bundle then seal to the new key), so when nothing opens a payload and a
    key directory is known, the directory is looked at (``stat`` only, at most
    once per ``Limits.seal_key_recheck_seconds``) and the key files are re-read
    only when it changed (``seal.key``'s inode, mtime or size, or the
    directory's mtime: a rotation renames and writes files). ``reload()`` re-reads
    them at once (SIGHUP, and a trust bundle that lists a sealing key of this
    gateway not in memory).
    """

    def __init__(
        self,
        current: AnySealPrivateKey,
        retired: Sequence[AnySealPrivateKey] = (),
        key_dir: Path | None = None,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._current = current
        self._keys = (current, *retired)
        self._dir = key_dir
        self._limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        # What the directory looked like when the keys in memory were read, and
        # when it was last looked at (the first payload no key opens looks).
        self._stamp = self._disk_stamp()
        self._checked = clock() - limits.seal_key_recheck_seconds

    @property
    def current(self) -> AnySealPrivateKey:
        """The key peers are told to seal replies to (``reply_seal_key``)."""
        return self._current

    @property
    def keys(self) -> tuple[AnySealPrivateKey, ...]:
        """Every key known now, current first (``gateway.sealing`` caches by key)."""
        return self._keys

    def open(self, domain: str, blob: bytes, associated_data: bytes) -> bytes:
        tried = self._keys
        for k in tried:
            try:
                return open_sealed(k, domain, blob, associated_data)
            except CryptoFailure:
                continue
        for k in self._keys_since(tried):
            try:
                return open_sealed(k, domain, blob, associated_data)
            except CryptoFailure:
                continue
        raise CryptoFailure()

    def _disk_stamp(self) -> tuple[int, ...] | None:
        if self._dir is None:
            return None
        try:
            key, folder = (self._dir / SEAL_FILE).stat(), self._dir.stat()
        except OSError:
            return None
        return (key.st_ino, key.st_mtime_ns, key.st_size, folder.st_mtime_ns)

    def _keys_since(self, tried: tuple[AnySealPrivateKey, ...]) -> tuple[AnySealPrivateKey, ...]:
        """The keys known now beyond ``tried``, after re-reading the key files if
        the directory changed since they were read (looked at, with ``stat``, no
        more often than the interval)."""
        if self._dir is None:
            return ()
        with self._lock:
            now = self._clock()
            if now - self._checked >= self._limits.seal_key_recheck_seconds:
                self._checked = now
                stamp = self._disk_stamp()
                if stamp is not None and stamp != self._stamp:
                    self._reload_locked(self._dir, stamp)
            return self._keys[len(tried) :]  # keys are only ever added, at the end

    def reload(self) -> tuple[AnySealPrivateKey, ...]:
        """Re-read the key files now (SIGHUP); return the keys not known before."""
        if self._dir is None:
            return ()
        with self._lock:
            return self._reload_locked(self._dir, self._disk_stamp())

    def _reload_locked(
        self, key_dir: Path, stamp: tuple[int, ...] | None
    ) -> tuple[AnySealPrivateKey, ...]:
        try:
            on_disk = [
                _read_seal_key(key_dir / SEAL_FILE, True, self._limits),
                *load_retired_seal_keys(key_dir, True, self._limits),
            ]
        except (InvalidArgument, ConfigurationError, StorageFailure):
            return ()  # e.g. caught mid-rotation: looked at again after the interval
        self._stamp = stamp
        known = {k.public_key.raw for k in self._keys}
        fresh = tuple(k for k in on_disk if k.public_key.raw not in known)
        self._keys = (*self._keys, *fresh)
        return fresh
