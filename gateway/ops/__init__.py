"""Operating a gateway: logs, metrics, the operations listener, backups.

``logs`` sets up logging (JSON lines or a human format) and carries the
per-RPC log context; ``metrics`` owns the Prometheus registry and the
collectors that read ledger, witness, budget, replay and quota state at scrape
time; ``http`` serves ``/metrics``, ``/healthz`` and ``/readyz``; ``observe``
is the gRPC interceptor that times every RPC and writes its one log line;
``backup`` takes consistent online snapshots and installs checked ones;
``spent`` refuses budgets or quotas lower than a ledger shows as spent.
"""
