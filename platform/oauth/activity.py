"""When a client last used its credentials: its newest token, and its last call to the API.

The newest token is already stored (`Token.issued_at`). The last API call is a row in
`ClientActivity`, written from bearer authentication at most once per
`API_CALL_WRITE_INTERVAL_SECONDS` per client and process: the request path stays free of
writes except for that one statement a minute, and the time shown is at most a minute
(plus the gap between processes) old. Each process remembers when it last wrote for a
client; N processes write at most N rows a minute per busy client. The table is not one
the access generation watches, so these writes never invalidate cached access reads.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import DatabaseError
from django.db.models import F, Max, QuerySet
from django.utils import timezone

from oauth.models import ClientActivity

log = logging.getLogger("vitamin.oauth")

API_CALL_WRITE_INTERVAL_SECONDS = 60
# client_id (random per client, never reused) → time.monotonic() of this process's last write.
_last_written: dict[str, float] = {}
_lock = threading.Lock()


def note_api_call(client) -> None:
    """Record that `client` called the API now, unless this process did so less than a minute ago.

    Never fails the request: a write that cannot be made now (a locked SQLite database) is
    logged and tried again on a later call. Bearer authentication runs before any view opens a
    transaction, so a failed statement here leaves none broken.
    """
    now = time.monotonic()
    with _lock:
        last = _last_written.get(client.client_id)
        if last is not None and now - last < API_CALL_WRITE_INTERVAL_SECONDS:
            return
        _last_written[client.client_id] = now
    try:  # one statement (an upsert), so it needs no transaction of its own
        ClientActivity.objects.bulk_create(
            [ClientActivity(client_id=client.pk, last_api_call_at=timezone.now())],
            update_conflicts=True,
            unique_fields=["client"],
            update_fields=["last_api_call_at"],
        )
    except DatabaseError:
        log.warning("could not record the API call of client %s; will try again", client.client_id, exc_info=True)
        with _lock:
            _last_written.pop(client.client_id, None)


def with_last_use(clients: QuerySet) -> QuerySet:
    """Clients annotated with `last_token_at` (their newest token's issue time) and `last_api_call_at`
    (to within API_CALL_WRITE_INTERVAL_SECONDS; None when never seen), in the one query."""
    return clients.annotate(last_token_at=Max("tokens__issued_at"), last_api_call_at=F("activity__last_api_call_at"))
