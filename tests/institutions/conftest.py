"""The cast of the institution tests: alice owns the fund, bob is an analyst there, olga is platform staff."""

from __future__ import annotations

from catalog_support import alice, bob, fast_password_hashing, fund, olga  # noqa: F401 - the shared cast
