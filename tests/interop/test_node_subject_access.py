"""A Node citizen portal reads a person's access history with only protos/, a cert and a token."""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import RunningFederation
from tests.interop.test_node_client import NODE_DIR, _ensure_node_modules, pytestmark  # noqa: F401


def test_node_portal_reads_a_verified_history_in_plain_json(federation: RunningFederation) -> None:
    _ensure_node_modules()
    site = federation.site("130000")
    who = federation.commuter()
    with federation.client("130000", "hebei-housing-fund") as c:
        rid = c.get_records(
            holder_jurisdiction="110000",
            dataset="si_contributions",
            purpose="housing_fund_transfer",
            subject_ids=[who],
        ).request_id
    out = subprocess.run(
        ["node", "subject.mjs", site.service_address, "130000", str(site.tls_cert), who],
        cwd=NODE_DIR, check=True, capture_output=True, text=True, timeout=60,
        env={**os.environ, "GATEWAY_TOKEN": site.tokens["hebei-citizen-portal"]},
    )  # fmt: skip
    history = json.loads(out.stdout.strip().splitlines()[-1])
    assert "error" not in history, history
    assert [j["status"] for j in history["jurisdictions"]] == ["ANSWERED"] * 3
    mine = [e for e in history["events"] if e["request_id"] == rid]
    assert [e["kind"] for e in mine] == ["records"]
    assert mine[0]["proof"]["entry_hash"] and int(mine[0]["timestamp_ms"]) > 0
