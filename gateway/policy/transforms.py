"""Field transforms applied to released values: pass, mask, pseudonymise, generalise.

Owns: turning one cell value into the string that may leave the gateway,
and the per-requester pseudonym keys. Does not own: which transform applies
to which field (agreements; ``gateway.policy.engine``) or where the gateway's
pseudonym secret is stored (the lead's key directory).

Rules that matter for privacy:

* Values that cannot be transformed as declared (an unparseable date, an
  address without a county-level unit) become ``""``: a transform never
  falls back to releasing the raw value.
* Masking never reveals the whole value: when a value is not longer than
  ``keep_first + keep_last`` every character is masked.
* Pseudonyms are HMAC-SHA256 under a key derived from the gateway secret and
  the requester (jurisdiction and service system), so two requesters cannot
  join their tokens, and nobody without the secret can confirm a guess by
  enumerating ID numbers.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import threading
from collections.abc import Sequence
from typing import Final

import numpy as np

from gateway import crypto, domains
from gateway.catalogue import PiiKind
from gateway.errors import InvalidArgument
from gateway.policy.model import Generalisation

MASK_CHAR: Final = "*"
PSEUDONYM_PREFIX: Final = "pn_"
PSEUDONYM_SECRET_LEN: Final = 32
_TOKEN_BYTES: Final = 20  # 160 bits -> 32 base32 characters


def render(value: object) -> str:
    """The release form of a raw value: str; dates ISO; None -> ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, int | float):
        return str(value)
    raise InvalidArgument.expected(
        "cell value", "str, int, float, date or None", type(value).__name__
    )


def mask(text: str, keep_first: int, keep_last: int) -> str:
    """Replace every character except the first ``keep_first`` and last
    ``keep_last`` with ``*`` (characters, not bytes: 张三丰 -> 张**)."""
    n = len(text)
    if n == 0:
        return ""
    if n <= keep_first + keep_last:
        return MASK_CHAR * n
    tail = text[n - keep_last :] if keep_last else ""
    return text[:keep_first] + MASK_CHAR * (n - keep_first - keep_last) + tail


_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")

# Province-level, then optional prefecture-level, then the county-level unit
# (区/县/旗 or a county-level 市). Everything after it (street, number) is cut.
# Division names are Chinese characters only, and short (the longest county-level
# name, 积石山保安族东乡族撒拉族自治县, has 14 before its 县): a prefix with a digit,
# a Latin letter, a space or punctuation, or a longer run, is a street, a building or
# a room, never a division, and a residential compound (小区) or community (社区) is
# not a district: such an address releases nothing rather than that detail.
_NAME = r"(?:(?![省市区县旗])[\u4e00-\u9fff])"
_ADDRESS_RE = re.compile(
    rf"^(?P<prov>{_NAME}{{1,10}}?(?:省|自治区|特别行政区)|北京市|天津市|上海市|重庆市)?"
    rf"(?P<pref>{_NAME}{{1,12}}?(?:自治州|地区|盟|市))?"
    rf"(?P<county>{_NAME}{{1,15}}?(?<![小社])(?:区|县|旗|市))"
)


def generalise(value: object, to: Generalisation) -> str:
    """Coarsen a value: a date to its year or month, an address to its district."""
    if value is None:
        return ""
    if to in (Generalisation.YEAR, Generalisation.MONTH):
        if isinstance(value, dt.date):
            y, m = value.year, value.month
        else:
            match = _DATE_RE.match(render(value).strip())
            if match is None:
                return ""
            y, m = int(match.group(1)), int(match.group(2))
            if not 1 <= m <= 12:
                return ""
        return f"{y:04d}" if to is Generalisation.YEAR else f"{y:04d}-{m:02d}"
    # DISTRICT
    match = _ADDRESS_RE.match(render(value).strip())
    if match is None:
        return ""
    return match.group(0)


def _normalise(text: str, pii: PiiKind) -> str:
    text = text.strip()
    if pii is PiiKind.ID_NUMBER:
        text = text.upper()  # 身份证 check character x/X is one value
    return text


class Pseudonymiser:
    """Keyed, per-requester pseudonyms: ``pn_`` + base32(HMAC)[:160 bits].

    The requester key is ``keyed_hash(secret, PSEUDONYM_REQUESTER_KEY,
    "<jurisdiction>/<service system>")``; a token is ``keyed_hash(requester
    key, PSEUDONYM, normalised value)``, with the federation suite's HMAC
    (HMAC-SHA256 for intl, HMAC-SM3 for gm). The secret never leaves this object.
    """

    def __init__(self, secret: bytes, suite: crypto.Suite = crypto.INTL) -> None:
        if len(secret) != PSEUDONYM_SECRET_LEN:
            raise InvalidArgument.expected(
                "pseudonym secret length", f"{PSEUDONYM_SECRET_LEN} bytes", len(secret)
            )
        self._secret = secret
        self._hmac = suite.keyed_hash
        self._hmacs = suite.keyed_hashes
        self._keys: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "Pseudonymiser(<secret>)"

    def requester_key(self, jurisdiction: str, service_system: str) -> bytes:
        ident = (jurisdiction, service_system)
        key = self._keys.get(ident)
        if key is None:
            label = f"{jurisdiction}/{service_system}".encode()
            key = self._hmac(self._secret, domains.PSEUDONYM_REQUESTER_KEY, label)
            with self._lock:
                if len(self._keys) > 100_000:  # bounded: requesters come from agreements
                    self._keys.clear()
                self._keys[ident] = key
        return key

    def token(self, value: object, jurisdiction: str, service_system: str, pii: PiiKind) -> str:
        text = _normalise(render(value), pii)
        if not text:
            return ""
        key = self.requester_key(jurisdiction, service_system)
        mac = self._hmac(key, domains.PSEUDONYM, text.encode("utf-8"))
        return PSEUDONYM_PREFIX + base64.b32encode(mac[:_TOKEN_BYTES]).decode("ascii").lower()

    def tokens(
        self, values: Sequence[object], jurisdiction: str, service_system: str, pii: PiiKind
    ) -> list[str]:
        """``token`` of each value, for a batch (streamed bulk transfers): the same
        strings, with the HMAC key prepared once and the base32 done in one pass."""
        upper = pii is PiiKind.ID_NUMBER
        texts = [
            (v.strip().upper() if upper else v.strip())
            if type(v) is str
            else _normalise(render(v), pii)
            for v in values
        ]  # _normalise(render(v)) with the common case (text) inline
        present = [t.encode("utf-8") for t in texts if t]
        key = self.requester_key(jurisdiction, service_system)
        tokens = _b32_tokens(self._hmacs(key, domains.PSEUDONYM, present))
        if len(tokens) == len(texts):  # no empty value: nothing to put back
            return tokens
        made = iter(tokens)
        return [next(made) if t else "" for t in texts]


_B32: Final = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)
_SHIFTS: Final = np.arange(35, -1, -5, dtype=np.uint64)  # 8 five-bit groups of 40 bits
_TOKEN_LEN: Final = len(PSEUDONYM_PREFIX) + _TOKEN_BYTES * 8 // 5


def _b32_tokens(macs: Sequence[bytes]) -> list[str]:
    """``pn_`` + lower-case base32 of each MAC's first 160 bits (as ``token``), vectorised."""
    if not macs:
        return []
    raw = np.frombuffer(b"".join(macs), dtype=np.uint8).reshape(len(macs), -1)
    five = raw[:, :_TOKEN_BYTES].reshape(-1, _TOKEN_BYTES // 5, 5).astype(np.uint64)
    groups = (
        (five[..., 0] << 32) | (five[..., 1] << 24) | (five[..., 2] << 16)
        | (five[..., 3] << 8) | five[..., 4]
    )  # fmt: skip
    chars = _B32[((groups[..., None] >> _SHIFTS) & 31).reshape(len(macs), -1)]
    out = np.empty((len(macs), _TOKEN_LEN), dtype=np.uint8)
    out[:, : len(PSEUDONYM_PREFIX)] = np.frombuffer(PSEUDONYM_PREFIX.encode(), dtype=np.uint8)
    out[:, len(PSEUDONYM_PREFIX) :] = chars
    text = out.tobytes().decode("ascii")
    n = _TOKEN_LEN
    return [text[i : i + n] for i in range(0, len(text), n)]
