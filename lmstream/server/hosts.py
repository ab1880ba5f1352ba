"""Which ``Host`` and ``Origin`` a server answers: loopback is not a boundary on its own.

A web page can reach a server on 127.0.0.1 through DNS rebinding (its own name, resolved
to the loopback address, arrives as the ``Host``), or send it requests from another origin.
Without API keys the server therefore answers only loopback host names unless told which
names to accept, and refuses browser requests from an ``Origin`` whose host is not one of
them. Pure code: the ASGI guard asks, and answers 400 or 403.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = ["HostPolicy", "host_name"]

LOOPBACK_NAMES = ("localhost", "*.localhost")


def host_name(value: str) -> str:
    """The host of a ``Host`` header value or an origin's netloc, without the port."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[1 : value.find("]")] if "]" in value else value
    name, _, _ = value.partition(":") if value.count(":") == 1 else (value, "", "")
    return name.rstrip(".")


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostPolicy:
    """Host names allowed (``*`` any, ``*.example.com`` a domain and its sub-domains)."""

    def __init__(self, allowed: Sequence[str] | None, keyed: bool) -> None:
        self.any = "*" in allowed if allowed is not None else keyed
        self.loopback = allowed is None  # the default: loopback names and addresses
        names = list(allowed or LOOPBACK_NAMES)
        self.exact = {n.lower() for n in names if not n.startswith("*.")}
        self.suffixes = tuple(n[1:].lower() for n in names if n.startswith("*."))

    def allows(self, name: str) -> bool:
        """Whether a bare host name (no port) is allowed."""
        if self.any or name in self.exact or name.endswith(self.suffixes):
            return True
        return self.loopback and _is_loopback(name)

    def allows_host(self, header: bytes | None) -> bool:
        """Whether a request's ``Host`` header is allowed (no header: not a browser)."""
        if self.any or header is None:
            return True
        return self.allows(host_name(header.decode("latin-1")))

    def allows_origin(self, header: bytes | None) -> bool:
        """Whether a browser request's ``Origin`` is allowed (no header: not a browser)."""
        if self.any or header is None:
            return True
        try:
            origin = urlsplit(header.decode("latin-1").strip())
        except ValueError:
            return False
        if origin.scheme not in ("http", "https") or not origin.netloc:
            return False  # "null" (a sandboxed page, a file) and anything odd
        return self.allows(host_name(origin.netloc.rpartition("@")[2]))
