"""Every gRPC servicer of the gateway, one module per API.

``records`` (``RecordExchange``, service port), ``peer`` (``PeerExchange``,
peer port), ``statistics`` (``Statistics``, service port), ``ledger``
(``Ledger``, both ports). A servicer converts protobuf to domain values, calls
the core and converts the answer back; nothing else. It raises the error tree
(``gateway.errors``) and never calls ``context.abort``: the one interceptor
(``gateway.server.interceptor``) authenticates the caller (``caller()``) and
maps errors to status codes.
"""
