"""The client address: REMOTE_ADDR, unless trusted proxies forwarded the request; never what a client claims."""

from __future__ import annotations

import ipaddress

import pytest
from django.test import RequestFactory

from vitamin.client_ip import client_ip

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))


def ip_of(remote_addr: str, forwarded_for: str | None = None) -> str:
    headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for is not None else {}
    return client_ip(RequestFactory().get("/", REMOTE_ADDR=remote_addr, **headers))


def test_without_trusted_proxies_the_header_is_ignored(settings):
    settings.TRUSTED_PROXIES = ()
    assert ip_of("198.51.100.7", "1.2.3.4") == "198.51.100.7"


@pytest.mark.parametrize(
    ("remote_addr", "forwarded_for", "expected"),
    [
        ("10.0.0.5", "203.0.113.9", "203.0.113.9"),  # one proxy
        ("10.0.0.5", "203.0.113.9, 10.1.1.1", "203.0.113.9"),  # two proxies of ours
        ("10.0.0.5", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the client's own prefix is not believed
        ("10.0.0.5", "10.2.2.2, 10.1.1.1", "10.2.2.2"),  # every hop ours: the leftmost
        ("10.0.0.5", "not-an-ip, 203.0.113.9", "203.0.113.9"),  # garbage left of the client: irrelevant
        ("10.0.0.5", "203.0.113.9, not-an-ip", "10.0.0.5"),  # garbage from our proxy's side: stop there
        ("10.0.0.5", "", "10.0.0.5"),
        ("10.0.0.5", None, "10.0.0.5"),
        ("198.51.100.7", "203.0.113.9", "198.51.100.7"),  # not from a trusted proxy
        ("2001:db8::1", "2001:db8::2, 2400:cb00::7", "2400:cb00::7"),  # IPv6
        ("::ffff:10.0.0.5", "203.0.113.9", "203.0.113.9"),  # a server bound on [::] sees IPv4 proxies mapped
        ("10.0.0.5", "203.0.113.9:51234", "203.0.113.9"),  # balancers that add the port
        ("10.0.0.5", "[2400:cb00::7]:443", "2400:cb00::7"),
    ],
)
def test_behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client(
    settings, remote_addr, forwarded_for, expected
):
    settings.TRUSTED_PROXIES = PROXIES
    assert ip_of(remote_addr, forwarded_for) == expected


def test_an_unparseable_remote_addr_is_never_a_trusted_proxy(settings):
    settings.TRUSTED_PROXIES = (ipaddress.ip_network("0.0.0.0/0"),)
    assert ip_of("unix-socket", "203.0.113.9") == "unix-socket"
