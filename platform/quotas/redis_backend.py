"""Quota counters and leases in Redis, each operation one Lua script (atomic on the server).

Keys (all under `vitamin:quota:`; metric names contain no colon, so the
subject can safely come last and contain anything):

- counter:{metric}:{window}:{window start epoch s}:{subject}  string; expires
  COUNTER_KEPT_AFTER_WINDOW after the window ends
- usage:{day}  hash of "{metric}:{subject}" -> amount consumed that day
  (settings.TIME_ZONE); expires USAGE_KEPT_DAYS after the day ends and is
  copied into UsageDaily by rollup_usage()
- lease:{metric}:{subject}  sorted set of lease ids scored by expiry (epoch ms);
  expires with its last lease

Times come from the calling process (so `now=` works in tests and both
backends agree), and expiries are set relative to that `now` (PEXPIRE), so
Redis's own clock never matters; app hosts need synchronized clocks, as they
do for tokens anyway.
A single Redis (or a primary) is assumed, not Redis Cluster: a consume script
touches a counter and a usage hash that would live in different slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

import redis

from quotas.backends import COUNTER_KEPT_AFTER_WINDOW, ConsumeResult, CounterKey, QuotaBackend, ReserveResult, Take
from quotas.decisions import Lease
from quotas.models import UsageDaily
from quotas.windows import EPOCH, day_bounds, usage_day

KEY_PREFIX = "vitamin:quota:"

# How long a day's usage hash outlives the day: a rollup outage shorter than this loses nothing.
USAGE_KEPT_DAYS = 7

# Amounts stay strings where they are passed on to Redis: Lua 5.1 would print a
# number above 1e14 in exponent form, which INCRBY rejects.
# KEYS: a counter and a usage hash per take; ARGV: 6 per take (amount, limit, counter
# lifetime ms, usage field, usage lifetime ms, meter). Every counter is checked before
# any is written, so a batch is all or nothing.
_CONSUME_ALL = """
local takes = #KEYS / 2
local used = {}
local fits = 1
for i = 1, takes do
  local arg = (i - 1) * 6
  used[i] = tonumber(redis.call('GET', KEYS[i * 2 - 1]) or '0')
  if used[i] + tonumber(ARGV[arg + 1]) > tonumber(ARGV[arg + 2]) then
    fits = 0
  end
end
if fits == 1 then
  for i = 1, takes do
    local arg = (i - 1) * 6
    if tonumber(ARGV[arg + 1]) > 0 then
      used[i] = redis.call('INCRBY', KEYS[i * 2 - 1], ARGV[arg + 1])
      redis.call('PEXPIRE', KEYS[i * 2 - 1], ARGV[arg + 3])
      if ARGV[arg + 6] == '1' then
        redis.call('HINCRBY', KEYS[i * 2], ARGV[arg + 4], ARGV[arg + 1])
        redis.call('PEXPIRE', KEYS[i * 2], ARGV[arg + 5])
      end
    end
  end
end
table.insert(used, 1, fits)
return used
"""

_REFUND = """
local used = redis.call('GET', KEYS[1])
if not used or tonumber(used) == 0 then
  return 0
end
local refunded = ARGV[1]
if tonumber(used) < tonumber(refunded) then
  refunded = used
end
redis.call('DECRBY', KEYS[1], refunded)
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], '-' .. refunded) < 0 then
    redis.call('HSET', KEYS[2], ARGV[2], 0)
  end
end
return tonumber(refunded)
"""

_RESERVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local held = redis.call('ZCARD', KEYS[1])
local granted = 0
if held < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
  held = held + 1
  granted = 1
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
if last then
  redis.call('PEXPIRE', KEYS[1], tonumber(last) - tonumber(ARGV[1]))
end
return {granted, held, tonumber(first) or -1}
"""


# KEYS: each lease's sorted set; ARGV: now (ms), the new expiry (ms), then each lease's id. Only a lease still
# live moves; the set's own expiry follows its latest lease.
_RENEW = """
local renewed = 0
for i = 1, #KEYS do
  local score = redis.call('ZSCORE', KEYS[i], ARGV[i + 2])
  if score and tonumber(score) > tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[i], 'XX', ARGV[2], ARGV[i + 2])
    if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[2]) - tonumber(ARGV[1]) then
      redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2]) - tonumber(ARGV[1]))
    end
    renewed = renewed + 1
  end
end
return renewed
"""


class RedisBackend(QuotaBackend):
    def __init__(self, url: str):
        self.url = url
        self.client = redis.Redis.from_url(url)
        self._consume_all = self.client.register_script(_CONSUME_ALL)
        self._refund = self.client.register_script(_REFUND)
        self._reserve = self.client.register_script(_RESERVE)
        self._renew = self.client.register_script(_RENEW)

    def consume_all(self, takes: Sequence[Take], now: datetime) -> ConsumeResult:
        keys, args = [], []
        for counter, amount, limit, meter in takes:
            keys += [_counter_key(counter), _usage_key(counter.day)]
            args += [
                amount,
                limit,
                _milliseconds(counter.window_end + COUNTER_KEPT_AFTER_WINDOW - now),
                _usage_field(counter.metric, counter.subject),
                _milliseconds(day_bounds(counter.day)[1] + timedelta(days=USAGE_KEPT_DAYS) - now),
                int(meter),
            ]
        fits, *used = self._consume_all(keys=keys, args=args)
        return ConsumeResult(bool(fits), tuple(int(value) for value in used))

    def peek(self, counter: CounterKey) -> int:
        return int(self.client.get(_counter_key(counter)) or 0)

    def refund(self, counter: CounterKey, amount: int, *, meter: bool) -> int:
        return int(
            self._refund(
                keys=[_counter_key(counter), _usage_key(counter.day)],
                args=[amount, _usage_field(counter.metric, counter.subject), int(meter)],
            )
        )

    def reserve(self, lease: Lease, limit: int, now: datetime) -> ReserveResult:
        granted, held, first_expiry_ms = self._reserve(
            keys=[_lease_key(lease)],
            args=[_milliseconds(now - EPOCH), limit, lease.lease_id, _milliseconds(lease.expires_at - EPOCH)],
        )
        first_expiry = None if first_expiry_ms < 0 else EPOCH + timedelta(milliseconds=first_expiry_ms)
        return ReserveResult(bool(granted), int(held), first_expiry)

    def renew_all(self, leases: Sequence[Lease], expires_at: datetime, now: datetime) -> int:
        if not leases:
            return 0
        return int(
            self._renew(
                keys=[_lease_key(lease) for lease in leases],
                args=[
                    _milliseconds(now - EPOCH),
                    _milliseconds(expires_at - EPOCH),
                    *(lease.lease_id for lease in leases),
                ],
            )
        )

    def live(self, leases: Sequence[Lease], now: datetime) -> set[str]:
        pipeline = self.client.pipeline(transaction=False)
        for lease in leases:
            pipeline.zscore(_lease_key(lease), lease.lease_id)
        now_ms = _milliseconds(now - EPOCH)
        return {
            lease.lease_id
            for lease, score in zip(leases, pipeline.execute(), strict=True)
            if score is not None and score > now_ms
        }

    def release(self, lease: Lease) -> None:
        self.client.zrem(_lease_key(lease), lease.lease_id)

    def release_all(self, leases: Sequence[Lease]) -> None:
        pipeline = self.client.pipeline(transaction=False)
        for lease in leases:
            pipeline.zrem(_lease_key(lease), lease.lease_id)
        pipeline.execute()

    def rollup_usage(self, now: datetime) -> int:
        """Copy every per-day usage hash still in Redis into UsageDaily.

        Values are absolute totals, written with an upsert, so a rerun (or two
        overlapping runs) writes the same numbers again.
        """
        today = usage_day(now)
        days = [today - timedelta(days=back) for back in range(USAGE_KEPT_DAYS + 1)]
        pipeline = self.client.pipeline(transaction=False)
        for day in days:
            pipeline.hgetall(_usage_key(day))
        rows = []
        for day, totals in zip(days, pipeline.execute(), strict=True):
            for field, amount in totals.items():
                metric, _, subject = field.decode().partition(":")
                rows.append(UsageDaily(subject=subject, metric=metric, day=day, amount=int(amount)))
        UsageDaily.objects.bulk_create(
            rows,
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["subject", "metric", "day"],
            update_fields=["amount"],
        )
        return len(rows)

    def purge_expired(self, now: datetime) -> int:
        return 0  # every key carries its own expiry


def _counter_key(counter: CounterKey) -> str:
    start = (counter.window_start - EPOCH) // timedelta(seconds=1)
    return f"{KEY_PREFIX}counter:{counter.metric}:{counter.window.value}:{start}:{counter.subject}"


def _usage_key(day: date) -> str:
    return f"{KEY_PREFIX}usage:{day.isoformat()}"


def _usage_field(metric: str, subject: str) -> str:
    return f"{metric}:{subject}"


def _lease_key(lease: Lease) -> str:
    return f"{KEY_PREFIX}lease:{lease.metric}:{lease.subject}"


def _milliseconds(duration: timedelta) -> int:
    return duration // timedelta(milliseconds=1)
