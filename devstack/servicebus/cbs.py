"""The `$cbs` claims-based-security node: verify SharedAccessSignature tokens from put-token requests."""

from __future__ import annotations

import hmac
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256
from urllib.parse import parse_qs, quote_plus

__all__ = ["TokenVerdict", "sign", "verify_token"]


@dataclass(frozen=True)
class TokenVerdict:
    """`status` is an HTTP code as CBS uses it: 202 accepted, 401 rejected."""

    status: int
    description: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def sign(audience: str, key: str, expiry: int) -> str:
    """The signature the SDK computes: b64(HMAC-SHA256(key, quote_plus(sr) + "\\n" + se))."""
    digest = hmac.new(key.encode(), f"{quote_plus(audience)}\n{expiry}".encode(), sha256).digest()
    return b64encode(digest).decode()


def verify_token(token: str, *, keys: Mapping[str, str], now: float) -> TokenVerdict:
    """Check a `SharedAccessSignature sr=..&sig=..&se=..&skn=..` token against the configured keys."""
    prefix = "SharedAccessSignature "
    if not token.startswith(prefix):
        return TokenVerdict(401, "Unauthorized: not a SharedAccessSignature token")
    fields = {k: v[0] for k, v in parse_qs(token[len(prefix) :], keep_blank_values=True).items()}
    key_name, audience, signature, expiry = (fields.get(k, "") for k in ("skn", "sr", "sig", "se"))
    key = keys.get(key_name)
    if key is None:
        return TokenVerdict(401, f"Unauthorized: unknown SharedAccessKeyName {key_name!r}")
    if not expiry.isdigit() or int(expiry) < now:
        return TokenVerdict(401, "Unauthorized: token expired")
    if not hmac.compare_digest(sign(audience, key, int(expiry)), signature):
        return TokenVerdict(401, "Unauthorized: signature mismatch")
    return TokenVerdict(202, "Accepted")
