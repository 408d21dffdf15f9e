"""The address a request came from: REMOTE_ADDR, or X-Forwarded-For as vouched for by trusted proxies.

    ip = client_ip(request)

X-Forwarded-For is a list a client can start with anything it likes; each proxy
appends the address it received the request from. So it is read from the right,
and only as far as the hops are proxies of ours (settings.TRUSTED_PROXIES): the
first address not in that list is the client. With no trusted proxies the header
is ignored, so a client cannot choose the address its audit events record or the
address its failed logins are throttled by.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def client_ip(request) -> str:
    """The client's IP address as text ("" when the server does not know it)."""
    address = request.META.get("REMOTE_ADDR") or ""
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted_proxy(address):
            break
        forwarded = _address(hop)
        if forwarded is None:  # not an address: our last proxy vouches for nothing further left
            break
        address = str(forwarded)
    return address


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as proxies write it: bare, `v4:port` or `[v6]:port`; an IPv4-mapped IPv6 one as IPv4."""
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip


def _is_trusted_proxy(address: str) -> bool:
    if not settings.TRUSTED_PROXIES:
        return False
    ip = _address(address)
    return ip is not None and any(ip in network for network in settings.TRUSTED_PROXIES)
