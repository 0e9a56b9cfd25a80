"""Every RFC 9162 proof vector in ../shared/vectors/rfc9162 (transparency-dev/merkle)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from gateway.errors import VerificationFailed
from gateway.ledger.merkle import verify_consistency, verify_inclusion

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "rfc9162"
FILES = sorted(VECTORS.rglob("*.json"))


def _d(x: str | None) -> bytes:
    return base64.b64decode(x) if x else b""


def test_vector_folder_is_present_and_complete() -> None:
    assert (
        len([f for f in FILES if f.parent.parent.name == "inclusion" or "inclusion" in f.parts])
        > 50
    )
    assert len([f for f in FILES if "consistency" in f.parts]) > 50


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(VECTORS)))
def test_rfc9162_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    proof = [_d(p) for p in v["proof"] or []]
    if "leafIdx" in v:

        def run() -> None:
            verify_inclusion(v["leafIdx"], v["treeSize"], _d(v["leafHash"]), proof, _d(v["root"]))
    else:

        def run() -> None:
            verify_consistency(v["size1"], v["size2"], proof, _d(v["root1"]), _d(v["root2"]))

    if v["wantErr"]:
        with pytest.raises(VerificationFailed):
            run()
    else:
        run()
