"""The cast and data of the catalog and grant tests (defined in tests/catalog_support.py, shared by both folders):
olga is platform staff; alice owns the fund company and bob is an analyst there; dave owns the bank."""

from catalog_support import (  # noqa: F401 - fixtures
    alice,
    bank,
    bob,
    catalog,
    dave,
    demo_datasets,
    fast_password_hashing,
    fund,
    olga,
    plan,
    store_url,
)
