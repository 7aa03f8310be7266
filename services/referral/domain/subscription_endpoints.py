"""Where Subscription notifications may be sent: the endpoint allowlist
(REFERRAL_SUBSCRIPTION_ENDPOINT_ALLOWLIST). No I/O.

The Backport IG (channels.md, rest-hook security notes) strongly recommends refusing plain-HTTP
endpoints in production; a server that POSTs wherever a client says is also a way into the
networks it can reach (server-side request forgery), so CareBridge sends only to what its
operators listed: HTTPS to listed hosts or URL prefixes, and plain HTTP only where an `http://`
entry says so (loopback, in development and tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import BusinessRuleViolation

_WHERE = "Subscription.channel.endpoint"


@dataclass(frozen=True, slots=True)
class AllowedEndpoint:
    """One allowlist entry: a URL prefix (scheme, host, optional port and path) or a bare host
    (`clinic.example.org`, `*.example.org`, optional `:port`). Only an `http://` entry allows
    plain HTTP (and HTTPS) to its host; every other entry allows HTTPS only."""

    scheme: str | None
    host: str
    port: int | None
    path: str

    def allows(self, scheme: str, host: str, port: int | None, path: str) -> bool:
        # An http:// entry is the plain-HTTP exception for its host; HTTPS is always fine.
        if scheme != "https" and self.scheme != "http":
            return False
        if self.host.startswith("*."):
            if not host.endswith(self.host[1:]) or host == self.host[2:]:
                return False
        elif host != self.host:
            return False
        if self.port is not None and port != self.port:
            return False
        prefix = self.path.rstrip("/")
        return not prefix or path == prefix or path.startswith(prefix + "/")


def parse_allowlist(text: str) -> tuple[AllowedEndpoint, ...]:
    """REFERRAL_SUBSCRIPTION_ENDPOINT_ALLOWLIST: comma-separated entries. `https://host[:port][/path]`
    and `host` allow HTTPS; `http://host[:port][/path]` is the explicit exception for plain
    HTTP (loopback in development and tests). An entry without a port allows any port."""
    entries = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if "://" not in entry:
            host, _, port = entry.partition(":")
            entries.append(AllowedEndpoint(None, host.lower(), int(port) if port else None, ""))
            continue
        parts = urlsplit(entry)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"allowlist entry {entry!r} is not an http(s) URL or a host")
        entries.append(AllowedEndpoint(parts.scheme, parts.hostname.lower(), parts.port, parts.path))
    return tuple(entries)


def check_endpoint(endpoint: str, allowlist: Sequence[AllowedEndpoint]) -> None:
    """422 unless `endpoint` is an absolute http(s) URL the allowlist allows (HTTPS unless an
    `http://` entry names it). No credentials in the URL: they would be logged and stored."""
    where = _WHERE
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        raise _refused(f"channel.endpoint {endpoint!r} is not a URL", where) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refused(f"channel.endpoint {endpoint!r} is not an absolute http(s) URL", where)
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise _refused("channel.endpoint may not carry credentials or a fragment; use channel.header", where)
    host = parts.hostname.lower()
    if any(entry.allows(parts.scheme, host, port, parts.path) for entry in allowlist):
        return
    if parts.scheme != "https":
        raise _refused(f"channel.endpoint must use https ({endpoint!r} is not allowed in plain HTTP)", where)
    raise _refused(
        f"channel.endpoint {endpoint!r} is not on this server's endpoint allowlist "
        "(REFERRAL_SUBSCRIPTION_ENDPOINT_ALLOWLIST)",
        where,
    )


def _refused(diagnostics: str, where: str) -> BusinessRuleViolation:
    return BusinessRuleViolation(diagnostics, expression=[where])
