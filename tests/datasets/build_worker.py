"""Run one build (and optionally publish) in its own process, so a test can SIGKILL it at a chosen moment.

    python build_worker.py STORE_DIR SCRATCH_DIR VERSION PAUSE_AT

PAUSE_AT says where the worker stops and waits to be killed:
- "reading":   the connector sleeps between batches; the worker never gets past reading the source.
- "built":     after build() returned (files written and checksummed in staging), before publish().
- "published": after publish() returned, before the caller would have committed the version row.
Progress goes to STORE_DIR/../worker-progress as single words, so the test knows when to kill.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2])]  # the repository, for `datasets` and `connectors`

from conftest import BASE_SPEC, ArrowSource, make_transactions  # noqa: E402 - this folder is sys.path[0]

from datasets.build import build  # noqa: E402
from datasets.publish import publish  # noqa: E402
from datasets.spec import parse_spec  # noqa: E402
from datasets.storage import Store  # noqa: E402


def main() -> None:
    store_dir, scratch_dir, version, pause_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    progress = Path(store_dir).parent / "worker-progress"

    def say(word: str) -> None:
        progress.write_text(word)

    store = Store.from_url(store_dir)
    spec = parse_spec(BASE_SPEC)
    source = ArrowSource(
        make_transactions(20_000, seed=version), batch_rows=500, sleep_seconds=30 if pause_at == "reading" else 0
    )
    result = build(
        spec,
        source,
        master_key=b"test-master-key-0123456789abcdef",
        release="r1",
        store=store,
        scratch_dir=scratch_dir,
        on_progress=lambda rows: say(f"reading {rows}"),
    )
    say("built")
    if pause_at == "built":
        time.sleep(60)
    publish(store, spec.slug, version, result)
    say("published")
    if pause_at == "published":
        time.sleep(60)


if __name__ == "__main__":
    main()
