"""Channels for attacking a running federation: peer ports with any TLS
identity, service ports with any token or client certificate, raw bytes to any
method."""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

import grpc

from gateway.crypto import TlsIdentity
from gateway.identity import tls_server_name
from tests.conftest import RunningFederation

_TOKEN = re.compile(r"^(svc_[A-Za-z0-9_\-]+)$", re.M)


def peer_channel(
    fed: RunningFederation, src: str, dst: str, identity: TlsIdentity | None = None
) -> grpc.Channel:
    """A mutual-TLS channel to ``dst``'s peer port, as ``src`` (or ``identity``)."""
    ident = identity or fed.gateways[src].keys.tls
    site = fed.site(dst)
    creds = grpc.ssl_channel_credentials(site.tls_cert.read_bytes(), ident.key_pem, ident.cert_pem)
    return grpc.secure_channel(
        f"127.0.0.1:{site.peer_port}",
        creds,
        options=[("grpc.ssl_target_name_override", tls_server_name(dst))],
    )


def mtls_service_channel(
    fed: RunningFederation, code: str, key: bytes, cert: bytes
) -> grpc.Channel:
    site = fed.site(code)
    creds = grpc.ssl_channel_credentials(site.tls_cert.read_bytes(), key, cert)
    return grpc.secure_channel(
        f"127.0.0.1:{site.service_mtls_port}",
        creds,
        options=[("grpc.ssl_target_name_override", tls_server_name(code))],
    )


def raw_call(
    channel: grpc.Channel, method: str, body: bytes, token: str | None = None, timeout: float = 10
) -> bytes:
    """Send ``body`` as the request of ``method`` (no client-side encoding)."""
    fn = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    md = (("authorization", f"Bearer {token}"),) if token else None
    out: Any = fn(body, timeout=timeout, metadata=md)
    return bytes(out)


def cli(*args: str) -> str:
    """Run a ``gateway`` command in-process; its stdout (it must succeed)."""
    from gateway.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(args)) == 0, out.getvalue()
    return out.getvalue()


def token_from_output(text: str) -> str:
    found = _TOKEN.findall(text)
    assert found, text
    return str(found[-1])
