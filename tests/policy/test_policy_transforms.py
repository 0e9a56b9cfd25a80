"""Transform vectors: masking 身份证号/phones/names, generalisation, pseudonyms."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import crypto, domains
from gateway.catalogue import PiiKind
from gateway.errors import InvalidArgument
from gateway.policy.model import Generalisation
from gateway.policy.transforms import Pseudonymiser, generalise, mask, render

KEY = bytes(range(32))


@pytest.mark.parametrize(
    ("value", "first", "last", "expected"),
    [
        ("110101199003078515", 6, 4, "110101********8515"),  # 身份证号
        ("11010119900307851X", 6, 4, "110101********851X"),
        ("13812345678", 3, 4, "138****5678"),  # mobile phone
        ("张三丰", 1, 0, "张**"),  # 3-character name
        ("张三", 1, 0, "张*"),
        ("欧阳娜娜", 1, 0, "欧***"),
        ("张", 1, 0, "*"),  # never reveal a whole value
        ("1381", 3, 4, "****"),
        ("", 6, 4, ""),
        ("abc", 0, 0, "***"),
    ],
)
def test_mask_vectors(value: str, first: int, last: int, expected: str) -> None:
    assert mask(value, first, last) == expected


@given(st.text(max_size=40), st.integers(0, 8), st.integers(0, 8))
def test_mask_never_reveals_more_than_kept_and_keeps_length(
    text: str, first: int, last: int
) -> None:
    out = mask(text, first, last)
    assert len(out) == len(text)
    visible = sum(1 for a, b in zip(out, text, strict=True) if b != "*" and a == b)
    assert visible <= min(len(text), first + last)
    if text and len(text) <= first + last:
        assert set(out) == {"*"}


@pytest.mark.parametrize(
    ("value", "to", "expected"),
    [
        ("1990-03-07", Generalisation.YEAR, "1990"),
        (dt.date(1990, 3, 7), Generalisation.YEAR, "1990"),
        ("1990-03-07", Generalisation.MONTH, "1990-03"),
        ("not a date", Generalisation.YEAR, ""),  # never fall back to the raw value
        ("1990-13-01", Generalisation.MONTH, ""),
        (None, Generalisation.YEAR, ""),
        ("北京市朝阳区建国路88号", Generalisation.DISTRICT, "北京市朝阳区"),
        ("河北省石家庄市长安区中山东路1号", Generalisation.DISTRICT, "河北省石家庄市长安区"),
        ("西藏自治区阿里地区噶尔县狮泉河镇", Generalisation.DISTRICT, "西藏自治区阿里地区噶尔县"),
        ("天津市和平区南京路100号", Generalisation.DISTRICT, "天津市和平区"),
        ("河北省三河市燕郊镇", Generalisation.DISTRICT, "河北省三河市"),
        ("建国路88号", Generalisation.DISTRICT, ""),  # no district unit: release nothing
    ],
)
def test_generalise_vectors(value: object, to: Generalisation, expected: str) -> None:
    assert generalise(value, to) == expected


def test_render_types() -> None:
    assert render(None) == ""
    assert render(12) == "12"
    assert render(8500.5) == "8500.5"
    assert render(dt.date(2020, 1, 2)) == "2020-01-02"
    assert render("x") == "x"
    with pytest.raises(InvalidArgument):
        render(object())


# Fixed vectors: a change to the derivation must be deliberate.
PSEUDONYM_VECTORS = [
    ("110101199003078515", "130000", "hebei-housing-fund", "pn_vqw23vekl4q7sjp5lcckgraiekouts37"),
    ("110101199003078515", "120000", "tianjin-planning", "pn_2blqv3vwhrjcklhkb4u444hqmpa3zixs"),
    ("11010119900307851X", "120000", "tianjin-planning", "pn_fnayqovldqiu4xpc3jxw4ej723chql3j"),
]


@pytest.mark.parametrize(("value", "juris", "system", "expected"), PSEUDONYM_VECTORS)
def test_pseudonym_fixed_vectors(value: str, juris: str, system: str, expected: str) -> None:
    p = Pseudonymiser(KEY)
    assert p.token(value, juris, system, PiiKind.ID_NUMBER) == expected


def test_pseudonym_matches_independent_derivation() -> None:
    """Recompute with hmac/hashlib directly: requester key, then token."""
    label = b"130000/hebei-housing-fund"
    rkey = hmac.new(
        KEY, crypto.pae(domains.PSEUDONYM_REQUESTER_KEY, label), hashlib.sha256
    ).digest()
    mac = hmac.new(
        rkey, crypto.pae(domains.PSEUDONYM, b"110101199003078515"), hashlib.sha256
    ).digest()
    import base64

    expected = "pn_" + base64.b32encode(mac[:20]).decode().lower()
    assert (
        Pseudonymiser(KEY).token(
            "110101199003078515", "130000", "hebei-housing-fund", PiiKind.ID_NUMBER
        )
        == expected
    )


def test_pseudonyms_cannot_be_joined_across_requesters_or_service_systems() -> None:
    p = Pseudonymiser(KEY)
    v = "110101199003078515"
    a = p.token(v, "130000", "hebei-housing-fund", PiiKind.ID_NUMBER)
    assert a == p.token(v, "130000", "hebei-housing-fund", PiiKind.ID_NUMBER)  # stable
    assert a != p.token(v, "120000", "hebei-housing-fund", PiiKind.ID_NUMBER)
    assert a != p.token(v, "130000", "other-system", PiiKind.ID_NUMBER)
    # Another gateway (another secret) gives unrelated tokens.
    assert a != Pseudonymiser(bytes(32)).token(v, "130000", "hebei-housing-fund", PiiKind.ID_NUMBER)


def test_pseudonym_cannot_be_confirmed_by_enumerating_without_the_key() -> None:
    """An attacker hashing candidate ID numbers (unkeyed or with a guessed key)
    never hits the token."""
    token = Pseudonymiser(KEY).token("110101199003078515", "130000", "s", PiiKind.ID_NUMBER)
    body = token.removeprefix("pn_")
    import base64

    for guess in ("110101199003078515", "110101199003078516"):
        plain = base64.b32encode(hashlib.sha256(guess.encode()).digest()[:20]).decode().lower()
        assert plain != body
    assert "110101199003078515" not in token


def test_pseudonym_normalises_id_check_character_and_space() -> None:
    p = Pseudonymiser(KEY)
    a = p.token("11010119900307851X", "1", "s", PiiKind.ID_NUMBER)
    assert a == p.token(" 11010119900307851x ", "1", "s", PiiKind.ID_NUMBER)
    assert p.token(None, "1", "s", PiiKind.ID_NUMBER) == ""


@given(st.text(min_size=1, max_size=30).filter(lambda s: s.strip()))
def test_pseudonym_shape_and_no_plaintext(value: str) -> None:
    tok = Pseudonymiser(KEY).token(value, "130000", "s", PiiKind.NONE)
    assert tok.startswith("pn_") and len(tok) == 35
    if len(value.strip()) >= 8:
        assert value.strip() not in tok


@pytest.mark.parametrize("bad", [b"", bytes(16), bytes(31), bytes(33)])
def test_pseudonym_secret_must_be_32_bytes(bad: bytes) -> None:
    with pytest.raises(InvalidArgument):
        Pseudonymiser(bad)


def test_pseudonymiser_repr_hides_secret() -> None:
    assert "0001" not in repr(Pseudonymiser(KEY)) and "\\x00" not in repr(Pseudonymiser(KEY))


@pytest.mark.parametrize("suite_name", ["intl", "gm"])
def test_batched_pseudonyms_equal_one_at_a_time_including_empty_and_odd_values(
    suite_name: str,
) -> None:
    import datetime as dt

    from gateway import crypto
    from gateway.catalogue import PiiKind
    from gateway.policy.transforms import Pseudonymiser

    p = Pseudonymiser(bytes(range(32)), crypto.suite(suite_name))
    values: list[object] = [
        "110105199003078515", " 11010519900307851x ", "", "   ", None, 42, 1.5,
        dt.date(2020, 1, 2), "张三丰", *(f"1101051990{i:08d}" for i in range(50)),
    ]  # fmt: skip
    for pii in PiiKind:
        batched = p.tokens(values, "120000", "tianjin-planning", pii)
        assert batched == [p.token(v, "120000", "tianjin-planning", pii) for v in values]
    assert p.tokens([], "120000", "tianjin-planning", PiiKind.ID_NUMBER) == []
