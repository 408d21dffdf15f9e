"""The SQL engine: partner SQL over published dataset versions, checked, governed by tier, and contained.

The read side of the dataset library. It knows dataset versions (`DatasetBinding`:
files, column roles, tier, analysis rules) and limits (`limits.Limits`), never who is
asking or whether they may: grants, quotas and audit are the caller's (the Django side
in `platform/query`, and every other read path built on this package). Nothing here
imports Django; the package loads and is tested without it.

    gateway          Gateway.check(sql, bindings) → CheckedQuery; Gateway.execute(checked, key, limits)
                     → QueryResult; Gateway.run does both. The one entry point.
    parser           DuckDB's own parser: one SELECT, else a stable code per statement kind
    checker          the allow-list walk: syntax, functions, tables by bare name only
    functions        the allow-listed functions, and which are aggregate, window or row-level
    aggregate_rules  the aggregate tier's analysis rules, checked once per query ...
    aggregate_plan   ... and its two-stage plan: groups below k are dropped before any partner expression runs
    sandbox          a locked-down DuckDB instance; each dataset bound as a view, identifiers re-keyed
    rekey            per-partner keys and the re-keying SQL for identifying columns
    watchdog         interrupts a query at its time limit
    results          a running query's result: row cap, truncation, bytes scanned
    formats          JSON, CSV, Arrow IPC and Parquet streams of a result
    isolation        IsolatedGateway: the same surface, each query executed in a worker process ...
    worker_process   ... under an address-space cap, killed past its time limit plus a grace period
    limits           Limits: the one limits type of every path (per query, per day, concurrency)
    errors           QueryRejected (the query must change) and QueryFailed (it could not run), stable codes

docs/query-internals.md explains the design; docs/query.md is the partner's reference.
"""
