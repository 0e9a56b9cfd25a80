"""Validated identifiers: one rule, one parser and one pydantic type each.

Owns: what a jurisdiction code, a service-system id, a catalogue code (dataset
codes, column and field names), a purpose code, a request id, a caller's client
reference, a log origin, an agreement id and an approval id look like, and the normal form of
a data subject's id (as asked, as a number subject column matches it, and of a subject value a
source returns).
Every other module parses through the functions here (``jurisdiction``,
``service_system``, ``code``, ``purpose``, ``request_id``), tests with the
``is_*`` predicates, or declares a pydantic field with the annotated types
(``JurisdictionCode``, ``ServiceSystemId``, ``Code``, ``Purpose``,
``RequestId``, ``SharingAgreementId``, ``StatsAgreementId``, ``ApprovalId``);
no other module holds a pattern for these.

A parser returns the value unchanged when it is valid and otherwise raises
``InvalidArgument`` whose message names the field, says what was expected and
quotes at most ``_QUOTE`` characters of what was given, so garbage from a
caller can never make a log line or a gRPC status message unbounded.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from pydantic import Field

from gateway.errors import InvalidArgument

# The rules. Patterns are anchored and ASCII-only (no \w, no \d: both match
# non-ASCII digits and letters in Python).
JURISDICTION_PATTERN: Final = r"^[1-9][0-9]{5}$"
SERVICE_SYSTEM_PATTERN: Final = r"^[a-z][a-z0-9-]{1,63}$"
CODE_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"
PURPOSE_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"
REQUEST_ID_PATTERN: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"

CLIENT_REFERENCE_PATTERN: Final = r"^[A-Za-z0-9._:-]{0,64}$"
# A transparency log's origin (the C2SP checkpoint's first line).
ORIGIN_PATTERN: Final = r"^[\x21-\x7e]{1,255}$"
# Agreement ids: as a sharing-agreement file declares one, as a statistics-
# agreement file declares one, and as a peer's signed answer may carry one
# (either form, or "" when no agreement applied).
SHARING_AGREEMENT_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{0,99}$"
STATS_AGREEMENT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
ANSWERED_AGREEMENT_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{0,128}$"
# An approval id as an agreement declares it (e.g. 京数共审〔2025〕017号):
# printable text (no control characters), at most 128 characters.
APPROVAL_ID_PATTERN: Final = r"^[^\x00-\x1f\x7f-\x9f]{1,128}$"
ANSWERED_APPROVAL_ID_PATTERN: Final = r"^[^\x00-\x1f\x7f-\x9f]{0,128}$"  # "": none
# A data subject's id (an 18-character resident ID number, a credit code).
# Personal data: a refusal never quotes it.
SUBJECT_ID_PATTERN: Final = r"^[0-9A-Za-z]{1,64}$"

_QUOTE: Final = 40
"""At most this many characters of a rejected value are quoted back."""
_MAX_WHAT: Final = 80
"""A field name in a message is cut to this many characters."""


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    expected: str

    def matches(self, value: object) -> bool:
        # fullmatch on an anchored pattern: "$" would otherwise accept a final "\n".
        return isinstance(value, str) and self.pattern.fullmatch(value) is not None

    def parse(self, value: object, what: str) -> str:
        if not self.matches(value):
            raise InvalidArgument(
                f"{what[:_MAX_WHAT]}: expected {self.expected}, got {_quote(value)}"
            )
        assert isinstance(value, str)
        return value


def _quote(value: object) -> str:
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= _QUOTE else text[: _QUOTE - 1] + "…"


_JURISDICTION = _Rule(
    re.compile(JURISDICTION_PATTERN, re.ASCII),
    "a six-digit administrative division code like 110000",
)
_SERVICE_SYSTEM = _Rule(
    re.compile(SERVICE_SYSTEM_PATTERN, re.ASCII),
    "a service-system id of 2-64 lowercase letters, digits and '-', starting with a letter "
    "(like hebei-housing-fund)",
)
_CODE = _Rule(
    re.compile(CODE_PATTERN, re.ASCII),
    "a code of 1-64 lowercase letters, digits and '_', starting with a letter "
    "(like si_contributions)",
)
_PURPOSE = _Rule(
    re.compile(PURPOSE_PATTERN, re.ASCII),
    "a code of 1-64 lowercase letters, digits and '_', starting with a letter "
    "(like housing_fund_transfer)",
)
_REQUEST_ID = _Rule(re.compile(REQUEST_ID_PATTERN, re.ASCII), "a lowercase UUIDv4")
_CLIENT_REFERENCE = _Rule(
    re.compile(CLIENT_REFERENCE_PATTERN, re.ASCII), "at most 64 characters of [A-Za-z0-9._:-]"
)

_ORIGIN = _Rule(
    re.compile(ORIGIN_PATTERN, re.ASCII), "1-255 printable ASCII characters without spaces"
)

_SUBJECT_ID = re.compile(SUBJECT_ID_PATTERN, re.ASCII)
# A SHA-256 digest (or SM3) in lowercase hex, as entries record them; "" where none.
HEX64_OR_EMPTY: Final = re.compile(r"^(?:[0-9a-f]{64})?$")

MAX_MESSAGE_CHARS: Final = (
    _MAX_WHAT
    + len(": expected , got ")
    + max(
        len(r.expected)
        for r in (_JURISDICTION, _SERVICE_SYSTEM, _CODE, _PURPOSE, _REQUEST_ID, _CLIENT_REFERENCE)
    )
    + _QUOTE
)
"""Upper bound on a parser's error message (field names are cut to 80 characters)."""


def jurisdiction(value: object, what: str = "jurisdiction") -> str:
    """A jurisdiction: a six-digit administrative division code (GB/T 2260)."""
    return _JURISDICTION.parse(value, what)


def service_system(value: object, what: str = "service_system") -> str:
    """A service system's id, as registered in ``gateway.toml``."""
    return _SERVICE_SYSTEM.parse(value, what)


def code(value: object, what: str = "dataset") -> str:
    """A catalogue code: a dataset code, a column or a field name."""
    return _CODE.parse(value, what)


def purpose(value: object, what: str = "purpose") -> str:
    """A declared purpose of use, as agreements name them."""
    return _PURPOSE.parse(value, what)


def request_id(value: object, what: str = "request_id") -> str:
    """A request id: a lowercase random (version 4) UUID."""
    return _REQUEST_ID.parse(value, what)


def client_reference(value: object, what: str = "client_reference") -> str:
    """A caller's own reference for a request (may be empty), echoed back and recorded."""
    return _CLIENT_REFERENCE.parse(value, what)


def origin(value: object, what: str = "origin") -> str:
    """A transparency log's origin, e.g. ``110000.gateway.dataexchange.cn/ledger``."""
    return _ORIGIN.parse(value, what)


def subject_id(value: object, what: str = "subject_id") -> str:
    """A data subject's id in its normal form: NFKC (full-width digits and
    letters become ASCII), surrounding spaces removed, letters upper-case (the
    check character ``x`` of a resident ID number is ``X``). The refusal never
    quotes the value: it is personal data."""
    text = unicodedata.normalize("NFKC", value).strip().upper() if isinstance(value, str) else ""
    if _SUBJECT_ID.fullmatch(text) is None:
        raise _bad_subject_id(what)
    return text


def subject_id_as_given(value: object, what: str = "subject_id") -> str:
    """A subject id exactly as given, nothing normalised: what a holder may look up
    (a register could match forms the subject index would not record, such as a
    trailing space under a collation that ignores it). Never quoted either."""
    if not is_subject_id(value):
        raise _bad_subject_id(what)
    return str(value)


_INT64_MAX: Final = 2**63 - 1


def subject_id_in_column(value: str, numeric: bool, what: str = "subject_ids") -> str:
    """The normal form of a subject id as a source's subject column matches it:
    against a numeric column the number it equals (``0012345`` finds person
    12345, whose normal form is ``12345``), else ``subject_id``. A number column
    matches only digits within a 64-bit integer; anything else is refused
    (InvalidArgument, never quoting the id) before any source is asked."""
    if not numeric:
        return subject_id(value, what)
    if not (is_subject_id(value) and value.isdigit() and int(value) <= _INT64_MAX):
        raise InvalidArgument(
            f"{what[:_MAX_WHAT]}: this dataset identifies subjects by number: expected "
            f"digits only, at most {_INT64_MAX}"
        )
    return str(int(value))


def subject_id_of_value(value: object) -> str | None:
    """The normal form of a subject column's value as a source returns it (text,
    an integer, or a float holding one), as subject access looks it up; None if
    it has none (NULL, a negative or fractional number, text outside the rule)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if value >= 0 else None
    if isinstance(value, str):
        try:
            return subject_id(value)
        except InvalidArgument:
            return None
    return None


def _bad_subject_id(what: str) -> InvalidArgument:
    return InvalidArgument(
        f"{what[:_MAX_WHAT]}: expected 1-64 letters or digits "
        "(e.g. an 18-character resident ID number)"
    )


def is_subject_id(value: object) -> bool:
    """Whether ``value`` is a subject id as given (before normalisation)."""
    return isinstance(value, str) and _SUBJECT_ID.fullmatch(value) is not None


def is_jurisdiction(value: object) -> bool:
    return _JURISDICTION.matches(value)


def is_service_system(value: object) -> bool:
    return _SERVICE_SYSTEM.matches(value)


def is_code(value: object) -> bool:
    return _CODE.matches(value)


def is_purpose(value: object) -> bool:
    return _PURPOSE.matches(value)


def is_request_id(value: object) -> bool:
    return _REQUEST_ID.matches(value)


def is_client_reference(value: object) -> bool:
    return _CLIENT_REFERENCE.matches(value)


_ANSWERED_AGREEMENT_ID = re.compile(ANSWERED_AGREEMENT_ID_PATTERN, re.ASCII)
_ANSWERED_APPROVAL_ID = re.compile(ANSWERED_APPROVAL_ID_PATTERN)


def is_answered_agreement_id(value: object) -> bool:
    """An agreement id a peer's answer may carry: either file's form, or ""."""
    return isinstance(value, str) and _ANSWERED_AGREEMENT_ID.fullmatch(value) is not None


def is_answered_approval_id(value: object) -> bool:
    """An approval id a peer's answer may carry: an agreement's, or "" (none)."""
    return isinstance(value, str) and _ANSWERED_APPROVAL_ID.fullmatch(value) is not None


Kind = Literal[
    "jurisdiction", "service_system", "code", "purpose", "request_id", "client_reference"
]


def valid(kind: Kind, value: object) -> bool:
    """Whether ``value`` passes rule ``kind`` (for callers that deny rather than raise)."""
    return _BY_KIND[kind].matches(value)


def expected(kind: Kind) -> str:
    """What rule ``kind`` expects, in words, for a refusal's reason."""
    return _BY_KIND[kind].expected


_BY_KIND: Final[dict[str, _Rule]] = {
    "jurisdiction": _JURISDICTION,
    "service_system": _SERVICE_SYSTEM,
    "code": _CODE,
    "purpose": _PURPOSE,
    "request_id": _REQUEST_ID,
    "client_reference": _CLIENT_REFERENCE,
}

# Pydantic field types for configuration, catalogue, policy and trust-bundle
# models (pydantic's own pattern check, so its errors read like the others').
JurisdictionCode = Annotated[str, Field(pattern=JURISDICTION_PATTERN)]
ServiceSystemId = Annotated[str, Field(pattern=SERVICE_SYSTEM_PATTERN)]
Code = Annotated[str, Field(pattern=CODE_PATTERN)]
Purpose = Annotated[str, Field(pattern=PURPOSE_PATTERN)]
RequestId = Annotated[str, Field(pattern=REQUEST_ID_PATTERN)]
SharingAgreementId = Annotated[str, Field(pattern=SHARING_AGREEMENT_ID_PATTERN)]
StatsAgreementId = Annotated[str, Field(pattern=STATS_AGREEMENT_ID_PATTERN)]
ApprovalId = Annotated[str, Field(pattern=APPROVAL_ID_PATTERN)]
