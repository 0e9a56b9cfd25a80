"""Differentially private statistics across jurisdictions (OpenDP + Polars).

Modules: ``model`` (queries, releases), ``agreements`` (policies/<code>/statistics.yaml),
``engine`` (OpenDP measurement, calibration, release), ``budget`` (persistent
epsilon/delta accounting), ``holder`` (answer one request under policy and
budget), ``coordinator`` (fan out, combine, report missing parts), ``convert``
(protobuf <-> domain). The gRPC ``Statistics`` servicer lives in
``gateway.server.servicers.statistics``.
"""
