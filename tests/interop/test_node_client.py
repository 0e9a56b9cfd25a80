"""A Node service system calls its gateway with only protos/, the gateway's cert and a token.

Evidence that the service-system API has no Python-only encodings. Needs node
and npm (the machine image has both); dependencies are installed from the npm
registry into tests/interop/node/node_modules on first run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RunningFederation
from tests.interop.npm import ensure_node_modules

NODE_DIR = Path(__file__).resolve().parent / "node"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="node/npm not installed"
)


def _ensure_node_modules() -> None:
    ensure_node_modules(NODE_DIR)


def _node(fed: RunningFederation, token: str, request: dict[str, object]) -> dict[str, object]:
    site = fed.site("130000")
    out = subprocess.run(
        ["node", "client.mjs", site.service_address, "130000", str(site.tls_cert), json.dumps(request)],
        cwd=NODE_DIR, check=True, capture_output=True, text=True, timeout=60,
        env={**os.environ, "GATEWAY_TOKEN": token},
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_node_client_gets_records_and_typed_refusals(federation: RunningFederation) -> None:
    _ensure_node_modules()
    token = federation.site("130000").tokens["hebei-housing-fund"]
    request = {
        "holder_jurisdiction": "110000",
        "dataset": "si_contributions",
        "purpose": "housing_fund_transfer",
        "subject_ids": [federation.commuter()],
    }
    ok = _node(federation, token, request)
    records = ok["records"]
    assert isinstance(records, list) and len(records) == 1
    assert "*" in records[0]["fields"]["person_id"]  # type: ignore[index]
    denied = _node(federation, token, {**request, "purpose": "marketing"})
    assert denied["error"]["code"] == 7  # type: ignore[index]  # PERMISSION_DENIED
    unauth = _node(federation, "svc_wrong", request)
    assert unauth["error"]["code"] == 16  # type: ignore[index]  # UNAUTHENTICATED


def _node_stream(
    fed: RunningFederation, token: str, request: dict[str, object]
) -> dict[str, object]:
    site = fed.site("120000")
    out = subprocess.run(
        ["node", "stream.mjs", site.service_address, "120000", str(site.tls_cert), json.dumps(request)],
        cwd=NODE_DIR, check=True, capture_output=True, text=True, timeout=60,
        env={**os.environ, "GATEWAY_TOKEN": token},
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_node_client_streams_a_bulk_transfer_and_resumes_from_its_cursor(
    federation: RunningFederation,
) -> None:
    _ensure_node_modules()
    token = federation.site("120000").tokens["tianjin-planning"]
    request = {
        "holder_jurisdiction": "110000",
        "dataset": "si_contributions",
        "purpose": "commuter_planning",
    }
    first = _node_stream(federation, token, request)
    done = first["completed"]
    assert isinstance(done, dict) and done["truncated"] is True  # the agreement's cap of 100
    assert sum(first["chunks"]) == int(done["row_count"]) == 100  # type: ignore[arg-type]
    assert first["first"]["fields"]["person_id"].startswith("pn_")  # type: ignore[index]
    resumed = _node_stream(federation, token, {**request, "cursor": done["cursor"]})
    assert resumed["started"]["start_row"] == "100"  # type: ignore[index]  # uint64 as a string
    denied = _node_stream(federation, token, {**request, "cursor": "v1:garbage:1"})
    assert denied["error"]["code"] == 3  # type: ignore[index]  # INVALID_ARGUMENT
