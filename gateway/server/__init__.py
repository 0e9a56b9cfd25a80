"""gRPC edge of the gateway: servers, interceptor, transport, servicers.

Servicers only convert between protobuf and domain values and call the core;
the one interceptor authenticates callers and maps GatewayError to status.
"""
