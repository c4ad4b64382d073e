"""Message signing: an HMAC-SHA256 over a task message's body and the headers that decide what runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Settings

#: The header that carries the signature; Celery workers ignore headers they do not know.
SIGNATURE_HEADER = "tq_signature"
#: Prefix of every signature value, so that the scheme can change without ambiguity.
SCHEME = "hmac-sha256-v1"
#: Headers covered by the signature: which task runs, as which id, when, how often, how long,
#: and where its result is counted (a group or chord).
SIGNED_HEADERS = (
    "id",
    "task",
    "eta",
    "expires",
    "retries",
    "timelimit",
    "group",
    "group_index",
    "root_id",
    "parent_id",
)
#: Shortest key accepted: a shorter shared secret can be guessed.
MIN_KEY_BYTES = 16


@dataclass(frozen=True, repr=False)
class SigningPolicy:
    """Whether messages are signed and checked: the key (None = off) and what to do with unsigned ones."""

    key: bytes | None = None
    accept_unsigned: bool = False

    @property
    def enabled(self) -> bool:
        return self.key is not None

    def __repr__(self) -> str:  # never show the key, even in a traceback
        state = "off" if self.key is None else "on"
        return f"<SigningPolicy {state} accept_unsigned={self.accept_unsigned}>"


def signing_policy(conf: Settings) -> SigningPolicy:
    """Read message_signing_key and message_signing_accept_unsigned; refuse a short key."""
    raw = conf["message_signing_key"]
    if raw is None or raw == "" or raw == b"":
        return SigningPolicy()
    key = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"message_signing_key is {len(key)} bytes: use at least {MIN_KEY_BYTES} random bytes, "
            "e.g. the output of `python -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    return SigningPolicy(key, bool(conf["message_signing_accept_unsigned"]))


def _as_bytes(body: Any, content_encoding: str | None) -> bytes:
    if isinstance(body, str):
        return body.encode(content_encoding or "utf-8")
    return bytes(body or b"")


def compute_signature(
    key: bytes,
    *,
    headers: Mapping[str, Any],
    body: bytes | str,
    content_type: str | None,
    content_encoding: str | None,
) -> str:
    """Return the signature of a message: `hmac-sha256-v1:<hex>`."""
    # hashlib and hmac load OpenSSL's digests (~0.8 MB in every worker process): only apps
    # that sign pay for them.
    import hashlib
    import hmac

    signed = {name: headers.get(name) for name in SIGNED_HEADERS}
    header_text = json.dumps(signed, sort_keys=True, separators=(",", ":"), default=str)
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in (SCHEME, content_type or "", content_encoding or "", header_text):
        mac.update(part.encode("utf-8", "surrogatepass") + b"\n")
    mac.update(_as_bytes(body, content_encoding))
    return f"{SCHEME}:{mac.hexdigest()}"


def signed_headers(
    policy: SigningPolicy,
    headers: Mapping[str, Any],
    *,
    body: bytes | str,
    content_type: str,
    content_encoding: str,
) -> dict[str, Any]:
    """Return the headers with the signature added (unchanged when signing is off)."""
    out = dict(headers)
    if policy.key is not None:
        out[SIGNATURE_HEADER] = compute_signature(
            policy.key,
            headers=headers,
            body=body,
            content_type=content_type,
            content_encoding=content_encoding,
        )
    return out


def refusal_reason(
    policy: SigningPolicy,
    *,
    headers: Any,
    body: Any,
    content_type: str | None,
    content_encoding: str | None,
) -> str | None:
    """Return why a received message must not run, or None when its signature allows it."""
    if policy.key is None:
        return None
    if not isinstance(headers, Mapping):
        return "it has no headers to carry a signature"
    given = headers.get(SIGNATURE_HEADER)
    if given is None:
        if policy.accept_unsigned:
            return None
        return (
            "it is not signed (this worker has message_signing_key set; sign the client too, "
            "or set message_signing_accept_unsigned during a roll-out)"
        )
    try:
        expected = compute_signature(
            policy.key,
            headers=headers,
            body=body,
            content_type=content_type,
            content_encoding=content_encoding,
        )
    except (LookupError, TypeError, ValueError, UnicodeError):
        return "its body cannot be read to check the signature"
    import hmac

    if not isinstance(given, str) or not hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8")
    ):
        return "its signature does not match (the message was changed, or signed with another key)"
    return None
