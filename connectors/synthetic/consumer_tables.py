"""Tables with one row per consumer: the consumers themselves and their credit profiles."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa

from .calendar import days_since_epoch
from .keyed import hash_normal, hash_uniform
from .people import CONSUMER_COLUMNS, Population, max_consumers
from .reference import INCOME_BANDS
from .table import DEFAULT_END_DATE, SyntheticTable

CONSUMER_FIELDS = [
    ("id_number", pa.string()),
    ("name", pa.string()),
    ("phone", pa.string()),
    ("birth_date", pa.date32()),
    ("gender", pa.string()),
    ("province", pa.string()),
    ("city", pa.string()),
    ("income_band", pa.string()),
]
MIN_SCORE, MAX_SCORE = 350, 950
ADULT_AGE_MONTHS = 18 * 12
DAYS_PER_MONTH = 30.436875


class ConsumersTable(SyntheticTable):
    """Row i is consumer_id i of every other table of the same seed."""

    name = "consumers"
    default_rows = 10_000
    max_rows = max_consumers()  # ID numbers stay distinct up to here
    schema = pa.schema(CONSUMER_FIELDS)

    def __init__(self, options: dict[str, Any]):
        super().__init__(options)
        self.population = Population(self.seed)

    def block(self, index: int, start: int, stop: int) -> pa.RecordBatch:
        return self.batch(self.population.columns(np.arange(start, stop, dtype=np.int64)))


class CreditProfilesTable(SyntheticTable):
    """Credit features and a Zhima-style score (350-950) per consumer, as of a date.

    The features follow each consumer's hidden credit risk (the same one that drives
    repayments in the loans table); the score is a weighted blend of the features.
    """

    name = "credit_profiles"
    default_rows = 10_000
    max_rows = max_consumers()
    options = frozenset({"as_of"})
    schema = pa.schema(
        [
            ("consumer_id", pa.int64()),
            *CONSUMER_FIELDS,
            ("loans_count", pa.int32()),
            ("on_time_ratio", pa.float64()),
            ("max_days_past_due", pa.int32()),
            ("credit_utilization", pa.float64()),
            ("account_age_months", pa.int32()),
            ("credit_score", pa.int32()),
        ]
    )

    def __init__(self, options: dict[str, Any]):
        super().__init__(options)
        self.as_of: dt.date = options.get("as_of") or DEFAULT_END_DATE
        self.population = Population(self.seed)

    def block(self, index: int, start: int, stop: int) -> pa.RecordBatch:
        ids = np.arange(start, stop, dtype=np.int64)
        features = self.features(ids)
        return self.batch(
            {
                "consumer_id": pa.array(ids),
                **self.population.columns(ids, CONSUMER_COLUMNS),
                **{name: pa.array(values) for name, values in features.items()},
            }
        )

    def features(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        seed, risk = self.seed, self.population.credit_risk(ids)

        def uniform(stream: str) -> np.ndarray:
            return hash_uniform(seed, f"credit.{stream}", ids)

        def normal(stream: str) -> np.ndarray:
            return hash_normal(seed, f"credit.{stream}", ids)

        age_months = (days_since_epoch(self.as_of) - self.population.birth_days_since_epoch(ids)) / DAYS_PER_MONTH
        adult_months = np.clip(age_months - ADULT_AGE_MONTHS, 0, 240)
        account_age_months = np.floor(adult_months * (0.15 + 0.85 * uniform("account_age"))).astype(np.int32)
        loans_count = np.floor((0.6 + risk) * 5.0 * uniform("loans") ** 2).astype(np.int32)
        has_loans = loans_count > 0
        on_time_ratio = np.where(
            has_loans, np.round(np.clip(1.0 - 0.5 * risk**2 - 0.04 * np.abs(normal("on_time")), 0.0, 1.0), 3), 1.0
        )
        late_share = np.clip((risk - 0.55) / 0.45, 0.0, 1.0)
        max_days_past_due = np.where(
            has_loans, np.floor(late_share * 150.0 * (0.3 + 0.7 * uniform("days_past_due"))), 0
        ).astype(np.int32)
        credit_utilization = np.round(np.clip(0.08 + 0.7 * risk + 0.15 * normal("utilization"), 0.0, 1.0), 4)
        income = self.population.income_band_indices(ids) / (len(INCOME_BANDS) - 1)
        blend = (
            0.30 * on_time_ratio
            + 0.25 * (1.0 - credit_utilization)
            + 0.15 * np.minimum(account_age_months / 120.0, 1.0)
            + 0.20 * (1.0 - np.minimum(max_days_past_due, 180) / 180.0)
            + 0.10 * income
            + 0.04 * normal("score")
        )
        score = MIN_SCORE + (MAX_SCORE - MIN_SCORE) * (blend - 0.29) / 0.91  # centres scores near 660
        return {
            "loans_count": loans_count,
            "on_time_ratio": on_time_ratio,
            "max_days_past_due": max_days_past_due,
            "credit_utilization": credit_utilization,
            "account_age_months": account_age_months,
            "credit_score": np.clip(np.round(score), MIN_SCORE, MAX_SCORE).astype(np.int32),
        }
