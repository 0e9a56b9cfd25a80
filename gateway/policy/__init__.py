"""Sharing agreements: loading, linting, evaluating and enforcing them.

Owns the policy engine (see the submodules): ``api`` (the seam), ``model``
(agreement file schema), ``loader`` (policy sets and their digest),
``engine`` (``PolicyEngine``, the PolicyGate), ``transforms``, ``quota``,
``store`` (reload, watcher, SIGHUP) and ``lint``. Does not own the exchange
path or the ledger; they call ``PolicyGate`` and record its decisions.
"""

from __future__ import annotations

from gateway.policy.api import AccessRequest, Decision, FieldRule, PolicyGate
from gateway.policy.engine import PolicyEngine, StaticPolicy
from gateway.policy.loader import PolicySet, load_policy_set, policy_set_digest
from gateway.policy.quota import QuotaKey, QuotaStore, SqliteQuotaStore
from gateway.policy.store import PolicyStore, PolicyWatcher, ReloadResult, install_sighup_handler

__all__ = [
    "AccessRequest",
    "Decision",
    "FieldRule",
    "PolicyEngine",
    "PolicyGate",
    "PolicySet",
    "PolicyStore",
    "PolicyWatcher",
    "QuotaKey",
    "QuotaStore",
    "ReloadResult",
    "SqliteQuotaStore",
    "StaticPolicy",
    "install_sighup_handler",
    "load_policy_set",
    "policy_set_digest",
]
