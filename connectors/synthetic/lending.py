"""Consumer loans and their repayment schedules.

Both tables come from one loan book: loan i has the same consumer, terms and
repayment behaviour in `loans` and in `repayments` of the same seed and options.
A loan is repaid in equal monthly instalments; a delinquent loan stops being paid
at some instalment, and its status as of `as_of` follows from that.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from .arrays import dates, lookup, round_cents, string_table
from .calendar import days_since_epoch
from .keyed import WeightedChoice, block_rng
from .people import Population, max_consumers
from .table import DEFAULT_END_DATE, SyntheticTable

DEFAULT_LOANS = 10_000
MIN_DEFAULT_CONSUMERS = 1_000
LOAN_BLOCK_ROWS = 4_096  # about 75,000 repayment rows per block
TERMS_MONTHS = np.array([3, 6, 12, 24, 36])
_TERM_CHOICE = WeightedChoice([0.10, 0.20, 0.35, 0.20, 0.15])
MEDIAN_PRINCIPAL_CNY = 20_000.0
MIN_PRINCIPAL_CNY, MAX_PRINCIPAL_CNY = 1_000.0, 500_000.0
MIN_ANNUAL_RATE, MAX_ANNUAL_RATE = 0.036, 0.24  # 24% is the ceiling Chinese courts enforce
STATUSES = ("current", "paid_off", "overdue", "default")
CURRENT, PAID_OFF, OVERDUE, DEFAULT = range(4)
DEFAULT_AFTER_DAYS = 90  # past due for longer than this counts as default
_STATUSES = string_table(STATUSES)


def add_months(days: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Days since the epoch plus whole months, keeping the day of month (or the month's last day)."""
    day = days.astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    day_of_month = (day - month.astype("datetime64[D]")).astype(np.int64)
    target = month + months.astype("timedelta64[M]")
    target_first = target.astype("datetime64[D]").astype(np.int64)
    month_length = (target + 1).astype("datetime64[D]").astype(np.int64) - target_first
    return target_first + np.minimum(day_of_month, month_length - 1)


class LoanBook:
    """The loans of one seed: `block(i)` returns the numpy columns of loans [i * LOAN_BLOCK_ROWS, ...)."""

    def __init__(self, seed: int, loans: int, consumers: int, start: dt.date, end: dt.date, as_of: dt.date):
        self.seed, self.loans, self.consumers = seed, loans, consumers
        self.first_issue_day, self.issue_days = days_since_epoch(start), (end - start).days + 1
        self.as_of = days_since_epoch(as_of)
        self.population = Population(seed)

    def block(self, index: int) -> dict[str, np.ndarray]:
        start, stop = index * LOAN_BLOCK_ROWS, min((index + 1) * LOAN_BLOCK_ROWS, self.loans)
        count = stop - start
        rng = block_rng(self.seed, "loans", index)
        consumer = rng.integers(0, self.consumers, count)
        issue_day = self.first_issue_day + rng.integers(0, self.issue_days, count)
        term = TERMS_MONTHS[_TERM_CHOICE.pick(rng.random(count))]
        risk = self.population.credit_risk(consumer)
        principal = np.round(np.exp(np.log(MEDIAN_PRINCIPAL_CNY) + 0.8 * rng.standard_normal(count)), -2)
        principal = np.clip(principal, MIN_PRINCIPAL_CNY, MAX_PRINCIPAL_CNY)
        annual_rate = np.round(
            np.clip(0.045 + 0.15 * risk + 0.01 * rng.standard_normal(count), MIN_ANNUAL_RATE, MAX_ANNUAL_RATE), 4
        )
        delinquent = rng.random(count) < 0.01 + 0.3 * risk**4
        first_missed = np.where(delinquent, np.floor(rng.random(count) * term).astype(np.int64), term)
        monthly_rate = annual_rate / 12
        instalment = round_cents(principal * monthly_rate / (1 - (1 + monthly_rate) ** -term))
        return {
            "loan_id": np.arange(start, stop, dtype=np.int64) + 1,
            "consumer_id": consumer,
            "issue_day": issue_day,
            "term": term,
            "principal": principal,
            "annual_rate": annual_rate,
            "instalment": instalment,
            "first_missed": first_missed,  # 0-based instalment at which payments stop; == term if never
            "risk": risk,
        }

    def status(self, loans: dict[str, np.ndarray]) -> np.ndarray:
        issue_day, term, first_missed = loans["issue_day"], loans["term"], loans["first_missed"]
        due = self.due_count(issue_day, term)
        missed = first_missed < due
        first_missed_due_day = add_months(issue_day, np.minimum(first_missed, term - 1) + 1)
        days_past_due = self.as_of - first_missed_due_day
        return np.where(
            missed,
            np.where(days_past_due > DEFAULT_AFTER_DAYS, DEFAULT, OVERDUE),
            np.where(due >= term, PAID_OFF, CURRENT),
        )

    def due_count(self, issue_day: np.ndarray, term: np.ndarray) -> np.ndarray:
        """How many instalments (due one month apart, starting a month after issue) are due by as_of."""
        as_of_month = np.datetime64(self.as_of, "D").astype("datetime64[M]").astype(np.int64)
        months = as_of_month - issue_day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
        months = months - (add_months(issue_day, months) > self.as_of)
        return np.clip(months, 0, term)

    def blocks(self) -> range:
        return range(-(-self.loans // LOAN_BLOCK_ROWS))


class _LendingTable(SyntheticTable):
    options: ClassVar[frozenset[str]] = frozenset({"consumers", "start_date", "end_date", "as_of"})

    def __init__(self, options: dict[str, Any]):
        super().__init__(options)
        self.as_of: dt.date = options.get("as_of") or DEFAULT_END_DATE

    def loan_book(self, loans: int, consumers: int | None) -> LoanBook:
        consumers = consumers or min(max(loans // 2, MIN_DEFAULT_CONSUMERS), max_consumers())
        return LoanBook(self.seed, loans, consumers, self.start_date, self.end_date, self.as_of)


class LoansTable(_LendingTable):
    name = "loans"
    default_rows = DEFAULT_LOANS
    block_rows = LOAN_BLOCK_ROWS
    schema = pa.schema(
        [
            ("loan_id", pa.int64()),
            ("id_number", pa.string()),
            ("consumer_id", pa.int64()),
            ("issue_date", pa.date32()),
            ("principal", pa.float64()),
            ("term_months", pa.int32()),
            ("annual_rate", pa.float64()),
            ("status", pa.string()),
        ]
    )

    def __init__(self, options: dict[str, Any]):
        super().__init__(options)
        self.book = self.loan_book(self.rows, options.get("consumers"))

    def block(self, index: int, start: int, stop: int) -> pa.RecordBatch:
        loans = self.book.block(index)
        return self.batch(
            {
                "loan_id": pa.array(loans["loan_id"]),
                "id_number": self.book.population.columns(loans["consumer_id"], ["id_number"])["id_number"],
                "consumer_id": pa.array(loans["consumer_id"]),
                "issue_date": dates(loans["issue_day"]),
                "principal": pa.array(loans["principal"]),
                "term_months": pa.array(loans["term"].astype(np.int32)),
                "annual_rate": pa.array(loans["annual_rate"]),
                "status": lookup(_STATUSES, self.book.status(loans)),
            }
        )


class RepaymentsTable(_LendingTable):
    """One row per instalment of the first `loans` loans of the loans table with the same options (due or not
    yet due). `rows`, if given, caps the number of rows."""

    name = "repayments"
    default_rows = 0  # unused: the row count follows from the loans
    options = _LendingTable.options | {"loans"}
    schema = pa.schema(
        [
            ("loan_id", pa.int64()),
            ("due_date", pa.date32()),
            ("paid_date", pa.date32()),
            ("amount_due", pa.float64()),
            ("amount_paid", pa.float64()),
            ("days_past_due", pa.int32()),
        ]
    )

    def __init__(self, options: dict[str, Any]):
        super().__init__(options)
        self.row_cap: int | None = options.get("rows")
        self.book = self.loan_book(options.get("loans") or DEFAULT_LOANS, options.get("consumers"))

    def blocks(self) -> Iterator[pa.RecordBatch]:
        remaining = self.row_cap
        for index in self.book.blocks():
            if remaining is not None and remaining <= 0:
                return
            batch = self.block(index, 0, 0)
            if remaining is not None:
                batch = batch.slice(0, remaining)
                remaining -= batch.num_rows
            yield batch

    def block(self, index: int, start: int, stop: int) -> pa.RecordBatch:
        """All instalments of loan block `index` (start and stop are unused: rows follow from the loans)."""
        loans = self.book.block(index)
        term = loans["term"]
        loan = np.repeat(np.arange(len(term)), term)
        number = np.arange(len(loan)) - np.repeat(np.cumsum(term) - term, term)  # 0-based within its loan
        due_day = add_months(loans["issue_day"][loan], number + 1)
        fell_due = due_day <= self.book.as_of
        paid = fell_due & (number < loans["first_missed"][loan])
        rng = block_rng(self.seed, self.name, index)
        # Most instalments are paid on or a little before the due date; riskier borrowers pay later.
        delay_days = np.floor(rng.exponential(2.0, len(loan)) * (0.5 + 3.0 * loans["risk"][loan])).astype(np.int64) - 3
        paid_day = np.minimum(due_day + delay_days, self.book.as_of)
        days_past_due = np.where(
            paid, np.maximum(paid_day - due_day, 0), np.where(fell_due, self.book.as_of - due_day, 0)
        )
        amount_due = loans["instalment"][loan]
        return self.batch(
            {
                "loan_id": pa.array(loans["loan_id"][loan]),
                "due_date": dates(due_day),
                "paid_date": pa.array(paid_day.astype(np.int32), mask=~paid).cast(pa.date32()),
                "amount_due": pa.array(amount_due),
                "amount_paid": pa.array(np.where(paid, amount_due, 0.0)),
                "days_past_due": pa.array(days_past_due.astype(np.int32)),
            }
        )
