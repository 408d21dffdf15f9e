"""Partners and constants of the query gateway tests (fixtures: tests/query/conftest.py).

The gateway re-keys per institution, so its partners are institutions: the fund and the bank of
the suite's cast (the table in tests/catalog_support.py), each with its own re-keying key.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.ipc as ipc

from datasets.query.rekey import derive_partner_key

MASTER_KEY = b"test master key for re-keying, 32b"
K = 3  # min_entities of the aggregate dataset `cards`


@dataclass(frozen=True)
class Partner:
    name: str
    key: bytes


FUND = Partner("fund", derive_partner_key(MASTER_KEY, "fund"))
BANK = Partner("bank", derive_partner_key(MASTER_KEY, "bank"))


def arrow_stream_batches(data: bytes) -> list:
    """Every batch of an Arrow IPC stream with its custom metadata (the last carries the truncation flag)."""
    reader = ipc.open_stream(data)
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch_with_custom_metadata())
        except StopIteration:
            return batches
