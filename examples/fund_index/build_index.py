"""A consumption-signal index of listed companies, rebalanced monthly, built from Vitamin's datasets.

    python examples/fund_index/build_index.py --base-url http://localhost:8000 \\
        --credentials var/demo-credentials.json --out /tmp/fund-index [--top 100] [--cap 0.10] \\
        [--start 2023-03] [--end 2025-12]

What a fund quant's program does with the platform, and nothing more: an OAuth 2.0 client
(client credentials, Authlib), SQL over HTTP with `as_of`, pandas and pyarrow.

Schedule. The index is rebalanced at the close of the 5th trading day of every month from --start
to --end (trading days are market_daily's dates). Everything the selection reads is read as of that
day at 15:00 Asia/Shanghai, so only versions already published then are used:

- company_consumption_monthly: its latest month (the version holding month M is published on the
  3rd of M+1, so at the 5th trading day of M+1 the latest month is M);
- market_daily: its latest trading day (end of the previous month), for free-float market caps.

Score. Among companies with a consumption row in that month (a non-null mom_growth) and a market
snapshot: score = z(mom_growth) + 0.5 · z(yoy_growth), each z the cross-sectional z-score
(population standard deviation) clipped to [-3, 3]; a company without yoy_growth gets 0 for that
term. The --top N highest scores are held (ties broken by ticker; fewer if fewer are covered).

Weights. `level` is the index weighted by free-float market cap (free_float_shares · close at the
snapshot), each weight capped at --cap with the excess redistributed proportionally over the
uncapped names, repeated until no weight exceeds the cap. When N · cap < 1 no capped weighting
exists, and the rebalance falls back to equal weights (and says so). `level_equal` is the same
selection equally weighted. `benchmark_level` is every market_daily company weighted by market_cap
at the same snapshot, rebalanced on the same days.

Levels. Base 1000 at the close of the first rebalance day; between rebalances each holding grows with
its total_return_index (dividends and splits included), so weights drift; at each rebalance
turnover = ½ · Σ|w_new − w_drifted| (the first rebalance, bought from cash, is not counted in the
average). Performance is measured on market_daily's latest version: later data than the selection
saw, which is measurement, not look-ahead.

Sources. `ApiSource` reads through the API; `LocalParquetSource` reads the published Parquet files
of a store directly (`<store>/datasets/{slug}/v{n}/`) with a versions file saved from the API by
`--save-versions`; the computation does not know which it has, and both give the same outputs.

Outputs in --out: levels.csv, constituents.csv, index.png, summary.json.

The demo datasets are synthetic, with a small predictive signal planted on purpose: a backtest on
them shows that the program works, never that the strategy does.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from authlib.integrations.requests_client import OAuth2Session

CONSUMPTION = "company_consumption_monthly"
MARKET = "market_daily"
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")  # no daylight saving time since 1991
REBALANCE_TRADING_DAY = 5  # the 5th trading day of the month
REBALANCE_TIME = (15, 0)  # the exchanges' close
BASE_LEVEL = 1000.0
YOY_WEIGHT = 0.5
Z_CLIP = 3.0
TRADING_DAYS_PER_YEAR = 252


# --- reading the data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """Rows read from the platform, and the version of each dataset they came from."""

    frame: pd.DataFrame
    versions: dict[str, int]


class DataSource(Protocol):
    def consumption(self, as_of: datetime) -> Read:
        """The latest month of company_consumption_monthly published by `as_of`."""

    def market_snapshot(self, as_of: datetime) -> Read:
        """The latest trading day of market_daily published by `as_of`."""

    def total_returns(self) -> Read:
        """date, ticker, total_return_index for every trading day of market_daily's latest version."""

    def published_at(self, slug: str, number: int) -> datetime:
        """When a version was published (the versions API's `created_at`)."""


CONSUMPTION_COLUMNS = ["ticker", "company_name", "month", "spending", "mom_growth", "yoy_growth"]
MARKET_COLUMNS = ["ticker", "date", "close", "free_float_shares", "market_cap"]
RETURN_COLUMNS = ["date", "ticker", "total_return_index"]

CONSUMPTION_SQL = (
    f"SELECT {', '.join(CONSUMPTION_COLUMNS)} FROM {CONSUMPTION} WHERE month = (SELECT max(month) FROM {CONSUMPTION})"
)
MARKET_SQL = f"SELECT {', '.join(MARKET_COLUMNS)} FROM {MARKET} WHERE date = (SELECT max(date) FROM {MARKET})"
RETURNS_SQL = f"SELECT {', '.join(RETURN_COLUMNS)} FROM {MARKET}"


class ApiSource:
    """Vitamin's API: POST /api/v1/query (Arrow stream, `as_of`), GET /api/v1/datasets/{slug}/versions."""

    def __init__(self, base_url: str, credentials: dict) -> None:
        self.base_url = base_url.rstrip("/")
        # The credentials file names the server's public token URL; the token is asked of --base-url.
        token_url = self.base_url + urlsplit(credentials["token_endpoint"]).path
        self.session = OAuth2Session(
            credentials["client_id"],
            credentials["client_secret"],
            scope="catalog:read query",
            token_endpoint=token_url,
            grant_type="client_credentials",  # lets Authlib fetch a new token when this one expires
        )
        self.session.fetch_token(token_url, grant_type="client_credentials")
        self._versions: dict[str, list[dict]] = {}

    def consumption(self, as_of: datetime) -> Read:
        return self._query(CONSUMPTION_SQL, as_of)

    def market_snapshot(self, as_of: datetime) -> Read:
        return self._query(MARKET_SQL, as_of)

    def total_returns(self) -> Read:
        return self._query(RETURNS_SQL, None)

    def published_at(self, slug: str, number: int) -> datetime:
        return published_at(self.versions(slug), slug, number)

    def versions(self, slug: str) -> list[dict]:
        """Every version of a dataset, oldest first: number, status, created_at."""
        if slug not in self._versions:
            found, url = [], f"{self.base_url}/api/v1/datasets/{slug}/versions?page_size=100"
            while url:
                response = self.session.get(url, timeout=60)
                _raise_for_status(response)
                page = response.json()
                found += [{key: item[key] for key in ("number", "status", "created_at")} for item in page["results"]]
                url = page.get("next")
            self._versions[slug] = sorted(found, key=lambda item: item["number"])
        return self._versions[slug]

    def _query(self, sql: str, as_of: datetime | None) -> Read:
        body = {"sql": sql, "format": "arrow"}
        if as_of is not None:
            body["as_of"] = as_of.isoformat()
        response = self.session.post(f"{self.base_url}/api/v1/query", json=body, timeout=300)
        _raise_for_status(response)
        reader = ipc.open_stream(io.BytesIO(response.content))
        batches, truncated = [], None
        for batch, metadata in reader.iter_batches_with_custom_metadata():
            if metadata is not None and b"vitamin.truncated" in metadata:
                truncated = metadata[b"vitamin.truncated"] == b"true"
            batches.append(batch)
        if truncated is not False:  # a silently shortened result would change the index
            raise SystemExit(f"the result of {sql!r} was truncated (or incomplete): raise the plan's row cap")
        table = pa.Table.from_batches(batches, schema=reader.schema)
        return Read(table.to_pandas(), parse_versions(response.headers["X-Vitamin-Versions"]))


def parse_versions(header: str) -> dict[str, int]:
    """`X-Vitamin-Versions: market_daily=14, company_consumption_monthly=14` → {slug: number}."""
    pairs = (item.strip().split("=", 1) for item in header.split(",") if item.strip())
    return {slug: int(number) for slug, number in pairs}


def _raise_for_status(response) -> None:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            detail = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            detail = response.text[:500]
        raise SystemExit(f"{response.request.method} {response.url} answered {response.status_code} ({detail})")


class LocalParquetSource:
    """The published files of a local store, `<store>/datasets/{slug}/v{n}/**/*.parquet`, and a versions file
    (`--save-versions` of an API run) saying when each version was published: as_of resolves as the platform
    does, to the newest version published by then."""

    def __init__(self, store: Path, versions: dict[str, list[dict]]) -> None:
        self.store = Path(store)
        self.versions = versions

    def consumption(self, as_of: datetime) -> Read:
        number = self._version_at(CONSUMPTION, as_of)
        return Read(self._read_latest(CONSUMPTION, number, CONSUMPTION_COLUMNS, "month"), {CONSUMPTION: number})

    def market_snapshot(self, as_of: datetime) -> Read:
        number = self._version_at(MARKET, as_of)
        return Read(self._read_latest(MARKET, number, MARKET_COLUMNS, "date"), {MARKET: number})

    def total_returns(self) -> Read:
        latest = max(item["number"] for item in self.versions[MARKET] if item["status"] == "published")
        return Read(self._read(MARKET, latest, RETURN_COLUMNS), {MARKET: latest})

    def published_at(self, slug: str, number: int) -> datetime:
        return published_at(self.versions[slug], slug, number)

    def _version_at(self, slug: str, as_of: datetime) -> int:
        published = [item for item in self.versions[slug] if parse_time(item["created_at"]) <= as_of]
        if not published:
            raise SystemExit(f"{slug} had no published version at {as_of.isoformat()}")
        newest = max(published, key=lambda item: item["number"])
        if newest["status"] != "published":
            raise SystemExit(f"{slug} version {newest['number']} (current at {as_of.isoformat()}) is retired")
        return newest["number"]

    def _read(self, slug: str, number: int, columns: list[str], filters=None) -> pd.DataFrame:
        # File by file: the partition folders' names are not read as columns (the files hold them). Without
        # pyarrow's reader threads: a program that read Parquet on them can abort as it exits (apache/arrow#34314).
        tables = [
            pq.read_table(path, columns=columns, filters=filters, use_threads=False)
            for path in self._files(slug, number)
        ]
        return pa.concat_tables(tables).to_pandas()

    def _read_latest(self, slug: str, number: int, columns: list[str], time_column: str) -> pd.DataFrame:
        """The rows of the version's latest `time_column` value, as the API's `WHERE t = (SELECT max(t) ...)`:
        the column's maximum first, then only the row groups that can hold it."""
        latest = max(
            pc.max(pq.read_table(path, columns=[time_column], use_threads=False)[time_column])
            for path in self._files(slug, number)
        )
        return self._read(slug, number, columns, filters=[(time_column, "==", latest.as_py())])

    def _files(self, slug: str, number: int) -> list[Path]:
        files = sorted((self.store / "datasets" / slug / f"v{number}").rglob("*.parquet"))
        if not files:
            raise SystemExit(f"no Parquet files for {slug} version {number} under {self.store}")
        return files


def published_at(versions: list[dict], slug: str, number: int) -> datetime:
    for item in versions:
        if item["number"] == number:
            return parse_time(item["created_at"])
    raise SystemExit(f"{slug} has no version {number}")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the index ------------------------------------------------------------------------------------


def rebalance_days(trading_days: list[date], start: pd.Period, end: pd.Period) -> list[date]:
    """The 5th trading day of each month from `start` to `end` (months with fewer trading days are skipped)."""
    by_month: dict[pd.Period, list[date]] = {}
    for day in sorted(trading_days):
        by_month.setdefault(pd.Period(day, freq="M"), []).append(day)
    return [
        days[REBALANCE_TRADING_DAY - 1]
        for month, days in sorted(by_month.items())
        if start <= month <= end and len(days) >= REBALANCE_TRADING_DAY
    ]


def rebalance_instant(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, *REBALANCE_TIME, tzinfo=SHANGHAI)


def zscore(values: pd.Series) -> pd.Series:
    """Cross-sectional z-score clipped to ±3; missing values and a constant column score 0."""
    std = values.std(ddof=0)
    if not np.isfinite(std) or std == 0:
        return pd.Series(0.0, index=values.index)
    return ((values - values.mean()) / std).clip(-Z_CLIP, Z_CLIP).fillna(0.0)


def score(consumption: pd.DataFrame, market: pd.DataFrame) -> pd.DataFrame:
    """Every company with a mom_growth and a market snapshot, best score first (ties by ticker)."""
    market = market.assign(free_float_cap=market["free_float_shares"] * market["close"])
    covered = consumption.dropna(subset=["mom_growth"]).merge(
        market[["ticker", "free_float_cap", "market_cap"]], on="ticker", how="inner"
    )
    covered = covered[covered["free_float_cap"] > 0]
    scores = zscore(covered["mom_growth"]) + YOY_WEIGHT * zscore(covered["yoy_growth"])
    return covered.assign(score=scores).sort_values(["score", "ticker"], ascending=[False, True], ignore_index=True)


def capped_weights(values: pd.Series, cap: float) -> tuple[pd.Series, bool]:
    """Weights proportional to `values`, none above `cap`: capped names are fixed at the cap and the rest is
    spread over the others in proportion, until no weight exceeds it. Equal weights (and True) when
    len · cap < 1, where no such weighting exists."""
    if len(values) * cap < 1:
        return pd.Series(1.0 / len(values), index=values.index), True
    capped = pd.Series(False, index=values.index)
    while True:
        free = values[~capped]
        weights = pd.Series(cap, index=values.index)
        weights[~capped] = free / free.sum() * (1.0 - cap * capped.sum())
        over = weights > cap
        if not over.any():
            return weights / weights.sum(), False
        capped |= over


@dataclass
class Rebalance:
    day: date
    as_of: datetime
    holdings: pd.DataFrame  # ticker, company_name, score, weight, weight_equal
    benchmark: pd.Series  # market_cap weights of the whole universe, by ticker
    versions: dict[str, int]
    published: dict[str, datetime]
    consumption_month: date
    market_date: date
    equal_fallback: bool = False
    turnover: dict[str, float] = field(default_factory=dict)


def select(source: DataSource, day: date, top: int, cap: float) -> Rebalance:
    """What the index holds from the close of `day`, from what was published by 15:00 that day."""
    as_of = rebalance_instant(day)
    consumption = source.consumption(as_of)
    market = source.market_snapshot(as_of)
    versions = {**consumption.versions, **market.versions}
    published = {slug: source.published_at(slug, number) for slug, number in sorted(versions.items())}
    late = [slug for slug, moment in published.items() if moment > as_of]
    if late:  # the platform resolves as_of; a program that relies on it still checks
        raise SystemExit(f"{', '.join(late)} read at {as_of.isoformat()} was published later")
    consumption_frame, market_frame = _typed(consumption.frame), _typed(market.frame)
    chosen = score(consumption_frame, market_frame).head(top)
    if chosen.empty:
        raise SystemExit(f"no company has both consumption and market data at {as_of.isoformat()}")
    weights, fallback = capped_weights(chosen.set_index("ticker")["free_float_cap"], cap)
    holdings = chosen[["ticker", "company_name", "score"]].assign(
        weight=weights.to_numpy(), weight_equal=1.0 / len(chosen)
    )
    universe = market_frame.set_index("ticker")["market_cap"]
    universe = universe[universe > 0].sort_index()
    return Rebalance(
        day=day,
        as_of=as_of,
        holdings=holdings,
        benchmark=universe / universe.sum(),
        versions=versions,
        published=published,
        consumption_month=consumption_frame["month"].max().date(),
        market_date=market_frame["date"].max().date(),
        equal_fallback=fallback,
    )


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Dates as datetime64 and float columns as float64, however the rows were read."""
    frame = frame.copy()
    for column in ("month", "date"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column])
    for column in ("spending", "mom_growth", "yoy_growth", "close", "market_cap", "total_return_index"):
        if column in frame:
            frame[column] = frame[column].astype("float64")
    if "free_float_shares" in frame:
        frame["free_float_shares"] = frame["free_float_shares"].astype("float64")
    return frame


@dataclass
class Portfolio:
    """One portfolio's daily levels and what it held."""

    levels: np.ndarray
    holdings_count: np.ndarray
    turnover: list[float]


def simulate(prices: pd.DataFrame, targets: dict[date, pd.Series]) -> Portfolio:
    """Daily levels of a portfolio reset to `targets[day]` at the close of each rebalance day.

    `prices` holds total_return_index, one row per trading day from the first rebalance on, one column
    per ticker, forward-filled. A holding's units are fixed between rebalances, so its weight drifts with
    its return."""
    tickers = {ticker: position for position, ticker in enumerate(prices.columns)}
    values = prices.to_numpy()
    units = np.zeros(len(tickers))
    levels, counts, turnover = np.empty(len(prices)), np.empty(len(prices), dtype=np.int64), []
    level = BASE_LEVEL
    for row, day in enumerate(prices.index.date):
        if row:
            level = float(np.nansum(units * values[row]))
        target = targets.get(day)
        if target is not None:
            new = np.zeros(len(tickers))
            new[[tickers[ticker] for ticker in target.index]] = target.to_numpy()
            if row:
                drifted = np.nan_to_num(units * values[row]) / level
                turnover.append(0.5 * float(np.abs(new - drifted).sum()))
            else:
                turnover.append(1.0)  # bought from cash
            held = new > 0
            if not np.isfinite(values[row, held]).all():
                missing = [ticker for ticker in target.index if not np.isfinite(values[row, tickers[ticker]])]
                raise SystemExit(f"no total_return_index on {day} for {', '.join(missing[:5])}")
            units = np.zeros(len(tickers))
            units[held] = new[held] * level / values[row, held]
        levels[row] = level
        counts[row] = int((units > 0).sum())
    return Portfolio(levels, counts, turnover)


@dataclass
class IndexResult:
    levels: pd.DataFrame
    constituents: pd.DataFrame
    summary: dict


def build_index(source: DataSource, *, top: int, cap: float, start: pd.Period, end: pd.Period) -> IndexResult:
    returns = source.total_returns()
    frame = _typed(returns.frame)
    prices = frame.pivot(index="date", columns="ticker", values="total_return_index").sort_index().ffill()
    trading_days = list(prices.index.date)
    days = rebalance_days(trading_days, start, end)
    if not days:
        raise SystemExit(f"no month from {start} to {end} has {REBALANCE_TRADING_DAY} trading days in {MARKET}")
    rebalances = [select(source, day, top, cap) for day in days]
    for rebalance in rebalances:
        if rebalance.equal_fallback:
            print(
                f"{rebalance.day}: {len(rebalance.holdings)} names x cap {cap} < 1, equal weights instead",
                file=sys.stderr,
            )

    last_day = min(end.end_time.date(), trading_days[-1])
    prices = prices.loc[pd.Timestamp(days[0]) : pd.Timestamp(last_day)]
    paths = {
        "level": simulate(prices, {r.day: r.holdings.set_index("ticker")["weight"] for r in rebalances}),
        "level_equal": simulate(prices, {r.day: r.holdings.set_index("ticker")["weight_equal"] for r in rebalances}),
        "benchmark_level": simulate(prices, {r.day: r.benchmark for r in rebalances}),
    }
    for name, path in paths.items():
        for rebalance, turnover in zip(rebalances, path.turnover, strict=True):
            rebalance.turnover[name] = turnover

    levels = pd.DataFrame(
        {
            "date": [day.isoformat() for day in prices.index.date],
            "level": paths["level"].levels,
            "constituents": paths["level"].holdings_count,
            "level_equal": paths["level_equal"].levels,
            "benchmark_level": paths["benchmark_level"].levels,
        }
    )
    constituents = pd.concat([_constituent_rows(rebalance) for rebalance in rebalances], ignore_index=True)
    summary = {
        "start": levels["date"].iloc[0],
        "end": levels["date"].iloc[-1],
        "trading_days": len(levels),
        "rebalances": len(rebalances),
        "top": top,
        "cap": cap,
        "equal_weight_fallbacks": [r.day.isoformat() for r in rebalances if r.equal_fallback],
        "performance_data": {slug: number for slug, number in returns.versions.items()},
        "index": _statistics(levels["level"], [r.turnover["level"] for r in rebalances]),
        "index_equal_weight": _statistics(levels["level_equal"], [r.turnover["level_equal"] for r in rebalances]),
        "benchmark": _statistics(levels["benchmark_level"], [r.turnover["benchmark_level"] for r in rebalances]),
        "note": "Demo data are synthetic with a planted signal: this backtest is not evidence for the strategy.",
    }
    return IndexResult(levels, constituents, summary)


def _constituent_rows(rebalance: Rebalance) -> pd.DataFrame:
    versions = ";".join(f"{slug}={number}" for slug, number in sorted(rebalance.versions.items()))
    published = ";".join(
        f"{slug}={moment.astimezone(SHANGHAI).isoformat()}" for slug, moment in sorted(rebalance.published.items())
    )
    rows = rebalance.holdings.copy()
    rows.insert(0, "rebalance_date", rebalance.day.isoformat())
    rows.insert(1, "as_of", rebalance.as_of.isoformat())
    rows["consumption_month"] = rebalance.consumption_month.isoformat()[:7]
    rows["market_date"] = rebalance.market_date.isoformat()
    rows["versions_used"] = versions
    rows["published_at"] = published
    return rows


def _statistics(levels: pd.Series, turnover: list[float]) -> dict:
    daily = levels.pct_change().dropna()
    years = len(daily) / TRADING_DAYS_PER_YEAR
    annual_return = (levels.iloc[-1] / levels.iloc[0]) ** (1 / years) - 1 if years else None
    return {
        "final_level": round(float(levels.iloc[-1]), 6),
        "annualised_return": None if annual_return is None else round(float(annual_return), 6),
        "annualised_volatility": round(float(daily.std() * np.sqrt(TRADING_DAYS_PER_YEAR)), 6)
        if len(daily) > 1
        else None,
        # The first rebalance buys from cash (turnover 1): only the later ones are averaged.
        "average_turnover": round(float(np.mean(turnover[1:])), 6) if len(turnover) > 1 else None,
    }


# --- outputs --------------------------------------------------------------------------------------


def write_outputs(result: IndexResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result.levels.to_csv(out / "levels.csv", index=False)
    result.constituents.to_csv(out / "constituents.csv", index=False)
    draw_chart(result.levels, out / "index.png")
    (out / "summary.json").write_text(json.dumps(result.summary, indent=2) + "\n", encoding="utf-8")


def draw_chart(levels: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dates = pd.to_datetime(levels["date"])
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
    axes.plot(dates, levels["level"], label="Consumption index (capped free-float weights)", linewidth=1.6)
    axes.plot(dates, levels["level_equal"], label="Consumption index (equal weights)", linewidth=1.0)
    axes.plot(dates, levels["benchmark_level"], label="Benchmark (cap-weighted universe)", linewidth=1.2, color="grey")
    axes.set_title("Consumption-signal index vs benchmark (synthetic demo data)")
    axes.set_ylabel(f"level (base {BASE_LEVEL:.0f})")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})  # no version stamp: the same data give the same file
    plt.close(figure)


# --- command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="the Vitamin server, e.g. http://localhost:8000")
    parser.add_argument("--credentials", type=Path, help="demo-credentials.json (the first partner is used)")
    parser.add_argument("--save-versions", type=Path, help="with the API: also write the versions file here")
    parser.add_argument("--local-store", type=Path, help="read a local store's Parquet files instead of the API")
    parser.add_argument("--versions", type=Path, help="with --local-store: the versions file of an API run")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--cap", type=float, default=0.10)
    parser.add_argument("--start", type=pd.Period, default=pd.Period("2023-03", freq="M"))
    parser.add_argument("--end", type=pd.Period, default=pd.Period("2025-12", freq="M"))
    args = parser.parse_args(argv)
    if args.top < 1 or not 0 < args.cap <= 1:
        parser.error("--top must be at least 1 and --cap in (0, 1]")

    started = time.perf_counter()
    api = None
    if args.local_store:
        if not args.versions:
            parser.error("--local-store needs --versions")
        source: DataSource = LocalParquetSource(args.local_store, json.loads(args.versions.read_text()))
    elif args.base_url and args.credentials:
        partners = json.loads(args.credentials.read_text(encoding="utf-8"))["partners"]
        source = api = ApiSource(args.base_url, partners[0])
    else:
        parser.error("give --base-url and --credentials, or --local-store and --versions")

    result = build_index(source, top=args.top, cap=args.cap, start=args.start, end=args.end)
    result.summary["source"] = "local" if args.local_store else "api"
    result.summary["runtime_seconds"] = round(time.perf_counter() - started, 3)
    write_outputs(result, args.out)
    if args.save_versions and api is not None:
        saved = {slug: api.versions(slug) for slug in (CONSUMPTION, MARKET)}
        args.save_versions.write_text(json.dumps(saved, indent=1) + "\n", encoding="utf-8")
    index, benchmark = result.summary["index"], result.summary["benchmark"]
    print(
        f"{result.summary['rebalances']} rebalances, {result.summary['start']} to {result.summary['end']}: "
        f"index {index['final_level']:.1f} (annualised {index['annualised_return']:.2%}), "
        f"benchmark {benchmark['final_level']:.1f} (annualised {benchmark['annualised_return']:.2%}); "
        f"{result.summary['runtime_seconds']:.1f} s; outputs in {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
