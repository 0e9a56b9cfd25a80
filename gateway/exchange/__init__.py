"""Record exchange between gateways: the signed peer protocol, requester and holder."""
