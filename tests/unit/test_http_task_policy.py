"""The http_request allow-list: which URLs a list of `host` / `host:port` entries lets through."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.engine.http_task import HttpTaskPolicy, host_name


@pytest.mark.parametrize(
    ("entries", "url", "allowed"),
    [
        ({"example.com"}, "http://example.com/x", True),
        ({"example.com"}, "https://example.com/x", True),
        ({"example.com"}, "http://example.com:80/x", True),
        ({"example.com"}, "http://EXAMPLE.com/x", True),
        ({"example.com"}, "http://example.com:8080/x", False),
        ({"example.com"}, "https://example.com:80/x", False),
        ({"example.com"}, "http://api.example.com/x", False),
        ({"example.com"}, "http://example.com./x", False),
        ({"example.com:8080"}, "http://example.com:8080/x", True),
        ({"example.com:8080"}, "http://example.com/x", False),
        ({"example.com:443"}, "https://example.com/x", True),
        ({"127.0.0.1"}, "http://localhost/x", False),
        ({"[::1]:8080"}, "http://[::1]:8080/x", True),
        ({"[::1]"}, "http://[::1]:8080/x", False),
        ({"xn--bcher-kva.de"}, "http://bücher.de/x", True),
    ],
)
def test_the_allow_list_matches_host_and_port_as_written(
    entries: set[str], url: str, allowed: bool
) -> None:
    policy = HttpTaskPolicy(allowed_hosts=frozenset(entries))

    assert policy.allows(httpx.URL(url)) is allowed


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://Example.com/", "example.com"),
        ("https://example.com:443/", "example.com"),
        ("https://example.com:80/", "example.com:80"),
        ("http://[::1]:8080/", "[::1]:8080"),
    ],
)
def test_a_host_is_named_as_its_allow_list_entry_would_be(url: str, name: str) -> None:
    assert host_name(httpx.URL(url)) == name
