"""Attacks on agreements and transforms, as a hostile requester or a careless
bureau operator would try them: each test is named after the attack it covers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from gateway.errors import PolicyFileError
from gateway.policy.loader import load_policy_set
from gateway.policy.model import Generalisation, valid_from_ms, valid_until_ms
from gateway.policy.transforms import generalise
from tests.policy.policy_testkit import HolderDir, base_agreement, dump

# ---------------------------------------------------------------------------
# generalise to district: never more than the county-level unit
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "detail"),
    [
        # No county-level unit: the first 市/区/县 is part of a building or a room.
        ("中关村大街27号中关村大厦市场部", "中关村"),
        ("朝阳门外大街18号丰联广场A座1201市", "朝阳门"),
        ("海淀路1号院2号楼3单元401室（海淀区）", "海淀路"),
        ("张三 13800138000 北京市朝阳区", "张三"),
        # A residential compound (小区) or community (社区) is not a district.
        ("北京市望京花园小区3号楼201", "望京"),
        ("天津市体院北社区5号楼", "体院"),
    ],
)
def test_generalise_to_district_does_not_leak_street_house_number_or_compound(
    address: str, detail: str
) -> None:
    out = generalise(address, Generalisation.DISTRICT)
    assert detail not in out, out
    assert address.startswith(out)  # at most a coarser prefix (e.g. 北京市), never more


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("北京市朝阳区建国路88号", "北京市朝阳区"),
        (
            "新疆维吾尔自治区克孜勒苏柯尔克孜自治州阿图什市光明路",
            "新疆维吾尔自治区克孜勒苏柯尔克孜自治州阿图什市",
        ),
        ("青海省海东市互助土族自治县威远镇", "青海省海东市互助土族自治县"),
        (
            "甘肃省临夏回族自治州积石山保安族东乡族撒拉族自治县吹麻滩镇",
            "甘肃省临夏回族自治州积石山保安族东乡族撒拉族自治县",
        ),
        ("内蒙古自治区呼伦贝尔市鄂温克族自治旗巴彦托海镇", "内蒙古自治区呼伦贝尔市鄂温克族自治旗"),
        ("河北省唐山市路北区新华道1号", "河北省唐山市路北区"),
        ("江苏省南京市鼓楼区中山路1号", "江苏省南京市鼓楼区"),
    ],
)
def test_generalise_to_district_still_keeps_real_county_level_units(
    address: str, expected: str
) -> None:
    assert generalise(address, Generalisation.DISTRICT) == expected


# ---------------------------------------------------------------------------
# Agreement text that loads but breaks (or changes) every exchange under it
# ---------------------------------------------------------------------------


def test_multiline_legal_basis_is_refused_at_load_not_at_every_exchanges_ledger_append(
    holder_dir: Callable[..., HolderDir],
) -> None:
    # A YAML literal block keeps its line breaks. Loaded, every exchange under the
    # agreement was released (quota charged) and then refused by the holder's own
    # ledger append (control characters), as INVALID_ARGUMENT to an innocent peer.
    h = holder_dir()
    text = dump(base_agreement(legal_basis="PLACEHOLDER")).replace(
        "legal_basis: PLACEHOLDER",
        "legal_basis: |\n  《住房公积金管理条例》\n  第二十条",
    )
    h.write("a.yaml", text)
    with pytest.raises(PolicyFileError, match="legal_basis"):
        load_policy_set(h.root)


@pytest.mark.parametrize(
    ("key", "yaml_value"),
    [
        ("quota_per_day", "yes"),  # YAML 1.1 boolean: was loaded as a quota of 1
        ("max_records_per_request", "on"),
        ("valid_from", "0"),  # was read as Unix time: in force since 1970-01-01
        ("valid_until", "1861920000"),  # was read as Unix time: 2029-01-01
        ("valid_until", "2028-12-31T00:00:00-10:00"),  # a time zone that is not China's
    ],
)
def test_agreement_value_of_the_wrong_type_is_refused_not_coerced_into_another_meaning(
    holder_dir: Callable[..., HolderDir], key: str, yaml_value: str
) -> None:
    h = holder_dir()
    lines = dump(base_agreement()).splitlines()
    text = "\n".join(f"{key}: {yaml_value}" if ln.startswith(f"{key}:") else ln for ln in lines)
    h.write("a.yaml", text + "\n")
    with pytest.raises(PolicyFileError, match=key):
        load_policy_set(h.root)


def test_mask_keep_given_as_a_yaml_boolean_is_refused(
    holder_dir: Callable[..., HolderDir],
) -> None:
    h = holder_dir()
    text = dump(base_agreement()).replace("keep_first: 6", "keep_first: yes")
    assert "keep_first: yes" in text
    h.write("a.yaml", text)
    with pytest.raises(PolicyFileError, match="keep_first"):
        load_policy_set(h.root)


def test_agreement_valid_until_the_last_representable_day_loads_instead_of_a_traceback(
    holder_dir: Callable[..., HolderDir],
) -> None:
    # "Until further notice" written as 9999-12-31: counting back from the next day
    # overflowed (OverflowError out of policy check, gateway start and reload).
    h = holder_dir()
    h.write("a.yaml", base_agreement(valid_until=dt.date(9999, 12, 31)))
    a = load_policy_set(h.root).by_id["test-agreement"]
    assert a.until_ms == valid_from_ms(dt.date(9999, 12, 31)) + 86_400_000 - 1
    assert valid_until_ms(dt.date(2028, 12, 31)) == valid_from_ms(dt.date(2029, 1, 1)) - 1
