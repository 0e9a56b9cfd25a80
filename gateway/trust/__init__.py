"""The federation trust bundle: who the members are, signed by the federation authority.

A package of one job per module:

- ``gateway.trust.model``: the frozen ``Member`` and ``TrustBundle`` values;
- ``gateway.trust.verify``: the file format and its pure verification
  (bytes in, frozen values out; no I/O, no state);
- ``gateway.trust.state``: the highest accepted version, behind the
  ``BundleVersionStore`` protocol (``FileVersionStore`` today);
- ``gateway.trust.files``: reading bundle and key files (the edge);
- ``gateway.trust.authority``: the authority's tooling (sign, init, re-issue,
  add and remove members, rotate a member's keys).

Does not own: key generation (``gateway.identity``), TLS channel setup or peer
authentication (the server/client modules use ``TrustBundle.member_by_fingerprint``
and ``root_certificates_pem``), or which datasets a member may actually read
(``gateway.policy``).

The public names are re-exported here, so ``from gateway.trust import X`` works.
"""

from gateway.trust.authority import (
    AUTHORITY_KEY_FILE,
    init_federation,
    read_authority_signing_key,
    read_bundle_for_reissue,
    reissue_bundle_file,
    rotated_member,
    sign_bundle,
    with_member,
    without_member,
)
from gateway.trust.files import AUTHORITY_PUB_FILE, BUNDLE_FILE, load_bundle, read_authority_key
from gateway.trust.model import Member, TrustBundle, authority_key_id, default_origin
from gateway.trust.state import (
    VERSION_STATE_FILE,
    BundleVersionStore,
    FileVersionStore,
    accept_bundle,
)
from gateway.trust.verify import (
    bundle_expired,
    bundle_payload,
    canonical_json,
    check_in_force,
    verify_bundle,
    verify_bundle_for_reissue,
)

__all__ = [
    "AUTHORITY_KEY_FILE",
    "AUTHORITY_PUB_FILE",
    "BUNDLE_FILE",
    "VERSION_STATE_FILE",
    "BundleVersionStore",
    "FileVersionStore",
    "Member",
    "TrustBundle",
    "accept_bundle",
    "authority_key_id",
    "bundle_expired",
    "bundle_payload",
    "canonical_json",
    "check_in_force",
    "default_origin",
    "init_federation",
    "load_bundle",
    "read_authority_key",
    "read_authority_signing_key",
    "read_bundle_for_reissue",
    "reissue_bundle_file",
    "rotated_member",
    "sign_bundle",
    "verify_bundle",
    "verify_bundle_for_reissue",
    "with_member",
    "without_member",
]
