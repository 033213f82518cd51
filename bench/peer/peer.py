#!/usr/bin/env python3
"""The benchmark's peer: goalcast's goal creation, nightly counts and an ad-hoc query, written
the way a data scientist would, with DuckDB over the warehouse's Parquet files and
scikit-learn's logistic regression.

It repeats goalcast's steps so that bench/run.sh can time both on the same data:

- create: segment the users and plan the training cutoffs as goalcast does. Read features and
  labels with the same SQL, and sample training users by the same hash. Fit the same
  L2-penalized logistic regression on standardized inputs, backtest it, then score the target
  group and bucket it by tertile.
- nightly: for each goal, the members who performed a goal event from the goal's start through
  each day, per bucket.
- query: one read-only SQL query over the `events` and `profiles` views.

Only UTC goals are supported (goalcast's default time zone). Every command prints one JSON
object with its result and the seconds of each step.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv
import pyarrow.parquet as pq

MICROS_PER_DAY = 86_400_000_000
DAY = dt.timedelta(days=1)

# Defaults of goalcast's PredictOptions (src/predict/mod.rs).
MIN_POSITIVES = 100
MIN_NEGATIVES = 100
MIN_HISTORY_DAYS = 30
MAX_TRAINING_ROWS = 200_000
L2 = 1.0

# "Never happened" for recency inputs: about ten years, as in src/predict/model.rs.
NEVER_DAYS = 3650.0

BUCKETS = ["Most Likely", "Moderately Likely", "Least Likely"]

# The segments of sql/segments/, ported to DuckDB. {as_of} is a TIMESTAMPTZ literal and
# {as_of_date} a DATE literal of its UTC day. Each returns distinct non-null user ids.
SEGMENTS = {
    "all_users": """
        select distinct user_id
        from events
        where event_time < {as_of} and event_date <= {as_of_date}
    """,
    "san_francisco": """
        select distinct user_id
        from profiles
        where city = 'San Francisco' and user_id is not null
    """,
    "repeat_buyers_90d": """
        select user_id
        from events
        where event_name = 'Charged'
            and event_time < {as_of}
            and event_time >= {as_of} - interval '90 days'
        group by user_id
        having count(*) >= 2
    """,
}

# sql/features/user_features.sql ported to DuckDB; reads `population` and `goal_events`. The
# history is restricted to `population` users, so a sampled population aggregates only the
# sampled users' events (the output rows are the same either way).
USER_FEATURES = """
with

history as (
    select user_id, event_time, event_date
    from events
    where event_time < {cutoff} and event_date <= {cutoff_date}
        and user_id in (select user_id from population)
),

goal_history as (
    select user_id, event_time, event_date, amount
    from goal_events
    where event_time < {cutoff} and event_date <= {cutoff_date}
        and user_id in (select user_id from population)
),

activity as (
    select
        user_id,
        count(*) as events_all,
        count(*) filter (where event_time >= {cutoff} - interval '30 days') as events_30d,
        count(*) filter (where event_time >= {cutoff} - interval '90 days') as events_90d,
        min(event_time) as first_event_time,
        max(event_time) as last_event_time
    from history
    group by user_id
),

goal_activity as (
    select
        user_id,
        count(*) as goal_events_all,
        count(*) filter (where event_time >= {cutoff} - interval '7 days') as goal_events_7d,
        count(*) filter (where event_time >= {cutoff} - interval '30 days') as goal_events_30d,
        count(*) filter (where event_time >= {cutoff} - interval '90 days') as goal_events_90d,
        count(distinct event_date) as goal_days_all,
        round(coalesce(sum(greatest(amount, 0.0)), 0.0), 6) as goal_amount_all,
        round(coalesce(sum(greatest(amount, 0.0)) filter (
            where event_time >= {cutoff} - interval '90 days'
        ), 0.0), 6) as goal_amount_90d,
        min(event_time) as first_goal_time,
        max(event_time) as last_goal_time
    from goal_history
    group by user_id
)

select
    population.user_id,
    coalesce(activity.events_all, 0)::double as events_all,
    coalesce(activity.events_30d, 0)::double as events_30d,
    coalesce(activity.events_90d, 0)::double as events_90d,
    coalesce(goal_activity.goal_events_all, 0)::double as goal_events_all,
    coalesce(goal_activity.goal_events_7d, 0)::double as goal_events_7d,
    coalesce(goal_activity.goal_events_30d, 0)::double as goal_events_30d,
    coalesce(goal_activity.goal_events_90d, 0)::double as goal_events_90d,
    coalesce(goal_activity.goal_days_all, 0)::double as goal_days_all,
    coalesce(goal_activity.goal_amount_all, 0.0)::double as goal_amount_all,
    coalesce(goal_activity.goal_amount_90d, 0.0)::double as goal_amount_90d,
    ({cutoff_us} - epoch_us(activity.first_event_time)) / {day_us} as days_since_first_event,
    ({cutoff_us} - epoch_us(activity.last_event_time)) / {day_us} as days_since_last_event,
    ({cutoff_us} - epoch_us(goal_activity.first_goal_time)) / {day_us}
        as days_since_first_goal_event,
    ({cutoff_us} - epoch_us(goal_activity.last_goal_time)) / {day_us}
        as days_since_last_goal_event,
    case
        when goal_activity.goal_days_all >= 2 then
            (epoch_us(goal_activity.last_goal_time) - epoch_us(goal_activity.first_goal_time))
            / {day_us} / (goal_activity.goal_days_all - 1)
    end as mean_days_between_goal_days
from population
left join activity on activity.user_id = population.user_id
left join goal_activity on goal_activity.user_id = population.user_id
order by population.user_id
"""

# sql/features/labels.sql ported to DuckDB: `population` users with a goal event in the window.
LABELS = """
select distinct window_events.user_id
from goal_events as window_events
inner join population on population.user_id = window_events.user_id
where window_events.event_time >= {start}
    and window_events.event_time < {end}
    and window_events.event_date >= {start_date}
    and window_events.event_date <= {end_date}
"""

# The nightly counts of sql/nightly/goal_activity.sql for UTC goals, cumulated per day:
# members whose first goal event since the start falls on or before each day.
GOAL_DAILY = """
with

members as (
    select user_id, bucket, probability from read_parquet({predictions})
),

window_events as (
    select user_id, cast(event_time as date) as day
    from goal_events
    where event_time >= {start} and event_time < {through}
        and event_date >= {start_date} and event_date <= {through_date}
),

member_events as (
    select members.user_id, members.bucket, window_events.day
    from window_events
    inner join members on members.user_id = window_events.user_id
),

first_days as (
    select user_id, bucket, min(day) as day from member_events group by user_id, bucket
),

new_performers as (
    select bucket, day, count(*) as new_performers from first_days group by bucket, day
    union all
    select 'All', day, count(*) from first_days group by day
),

goal_events_per_day as (
    select bucket, day, count(*) as events from member_events group by bucket, day
    union all
    select 'All', day, count(*) from member_events group by day
),

bucket_sizes as (
    select bucket, count(*) as users, sum(probability) as expected_performers
    from members group by bucket
    union all
    select 'All', count(*), sum(probability) from members
),

days as (
    select cast(day as date) as day
    from range({start_date}, {last_day} + interval '1 day', interval '1 day') as t(day)
)

select
    {goal_name} as goal,
    bucket_sizes.bucket,
    days.day,
    bucket_sizes.users,
    bucket_sizes.expected_performers,
    coalesce(new_performers.new_performers, 0) as new_performers,
    cast(sum(coalesce(new_performers.new_performers, 0)) over (
        partition by bucket_sizes.bucket order by days.day
    ) as bigint) as performers,
    coalesce(goal_events_per_day.events, 0) as events
from bucket_sizes
cross join days
left join new_performers
    on new_performers.bucket = bucket_sizes.bucket and new_performers.day = days.day
left join goal_events_per_day
    on goal_events_per_day.bucket = bucket_sizes.bucket and goal_events_per_day.day = days.day
order by bucket_sizes.bucket, days.day
"""

class PeerError(Exception):
    """An invalid argument or a warehouse that cannot serve the request."""


class StepTimer:
    """Wall seconds per named step, summed over the step's runs."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed

    def rounded(self) -> dict[str, float]:
        return {name: round(seconds, 3) for name, seconds in self.seconds.items()}


# --- the warehouse ---------------------------------------------------------------------------


def table_files(warehouse: Path, table: str) -> list[str]:
    """Return the Parquet files of a table: the ones its `_table.json` manifest commits."""
    manifest_path = warehouse / table / "_table.json"
    if not manifest_path.exists():
        raise PeerError(f"table {table!r} not found: {manifest_path} is missing")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("pending"):
        raise PeerError(
            f"table {table!r} has an unfinished write; run any goalcast command on "
            f"{warehouse} to finish it first"
        )
    return [str(warehouse / table / file["path"]) for file in manifest["files"]]


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """Open DuckDB in memory with `events` and `profiles` views over the warehouse."""
    con = duckdb.connect()
    con.sql("SET TimeZone = 'UTC'")
    events = table_files(warehouse, "events")
    if not events:
        raise PeerError(f"the events table of {warehouse} is empty")
    con.sql(
        "CREATE VIEW events AS SELECT * FROM read_parquet("
        f"{sql_list(events)}, hive_partitioning = true, hive_types = {{'event_date': DATE}})"
    )
    if (warehouse / "profiles" / "_table.json").exists():
        profiles = table_files(warehouse, "profiles")
        if profiles:
            con.sql(f"CREATE VIEW profiles AS SELECT * FROM read_parquet({sql_list(profiles)})")
    return con


def sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: list[str]) -> str:
    return "[" + ", ".join(sql_text(value) for value in values) + "]"


def iso_time(micros: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=micros)
    return moment.isoformat().replace("+00:00", "Z")


def sql_time(micros: int) -> str:
    return f"TIMESTAMPTZ '{iso_time(micros)}'"


def sql_date(day: dt.date) -> str:
    return f"DATE '{day.isoformat()}'"


def utc_day(micros: int) -> dt.date:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)).date()


def midnight_micros(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * MICROS_PER_DAY


def register_goal_events(
    con: duckdb.DuckDBPyConnection, event_names: list[str], event_filter: str | None
) -> None:
    """Create the `goal_events` view: events of the goal's names that pass its filter."""
    known = {row[0] for row in con.sql("SELECT DISTINCT event_name FROM events").fetchall()}
    for name in event_names:
        if name not in known:
            raise PeerError(
                f"event {name!r} does not occur in the events table; known events: "
                + ", ".join(sorted(known))
            )
    condition = f"event_name IN ({', '.join(sql_text(name) for name in event_names)})"
    if event_filter:
        condition += f" AND ({event_filter})"
    con.sql(f"CREATE OR REPLACE VIEW goal_events AS SELECT * FROM events WHERE {condition}")


def register_segment(
    con: duckdb.DuckDBPyConnection, segment: str, at_micros: int, table: str = "population"
) -> int:
    """Evaluate `segment` at a time into a temporary table; return its number of users."""
    if segment not in SEGMENTS:
        raise PeerError(f"unknown segment {segment!r}; segments: {', '.join(sorted(SEGMENTS))}")
    query = SEGMENTS[segment].format(
        as_of=sql_time(at_micros), as_of_date=sql_date(utc_day(at_micros))
    )
    con.sql(
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT DISTINCT CAST(user_id AS VARCHAR) "
        f"AS user_id FROM ({query}) AS segment WHERE user_id IS NOT NULL"
    )
    return con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def sample_population(con: duckdb.DuckDBPyConnection, share: float) -> None:
    """Keep the `population` users whose FNV-1a sample key is below `share`."""
    user_ids = con.sql("SELECT user_id FROM population").to_arrow_table().column("user_id")
    user_ids = user_ids.combine_chunks()
    sampled = pa.table({"user_id": user_ids.filter(pa.array(fnv1a_unit(user_ids) < share))})
    con.register("sampled_users", sampled)
    con.sql("CREATE OR REPLACE TEMP TABLE population AS SELECT user_id FROM sampled_users")
    con.unregister("sampled_users")


# --- model inputs ----------------------------------------------------------------------------


def read_features(con: duckdb.DuckDBPyConnection, at_micros: int) -> pa.Table:
    """Read the raw features of every `population` user at a cutoff, sorted by user id."""
    query = USER_FEATURES.format(
        cutoff=sql_time(at_micros),
        cutoff_date=sql_date(utc_day(at_micros)),
        cutoff_us=at_micros,
        day_us=f"{MICROS_PER_DAY}.0",
    )
    return con.sql(query).to_arrow_table()


def read_positives(con: duckdb.DuckDBPyConnection, start_micros: int, end_micros: int) -> pa.Array:
    """Return the `population` users with a goal event in [start, end)."""
    query = LABELS.format(
        start=sql_time(start_micros),
        end=sql_time(end_micros),
        start_date=sql_date(utc_day(start_micros)),
        end_date=sql_date(utc_day(end_micros)),
    )
    return con.sql(query).to_arrow_table().column("user_id").combine_chunks()


def model_inputs(features: pa.Table, horizon_days: float) -> np.ndarray:
    """Compute the 28 model inputs of `RawFeatures::to_vector` (src/predict/model.rs)."""

    def column(name: str) -> np.ndarray:
        return features.column(name).to_numpy(zero_copy_only=False).astype(np.float64)

    def optional(name: str) -> np.ndarray:
        # Nulls become NaN, and each caller substitutes its own default with np.where.
        return pc.fill_null(features.column(name).cast(pa.float64()), np.nan).to_numpy()

    def ln(values: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(values, 0.0))

    def flag(condition: np.ndarray) -> np.ndarray:
        return condition.astype(np.float64)

    goal_events_all = column("goal_events_all")
    goal_days_all = column("goal_days_all")
    first_event = optional("days_since_first_event")
    tenure = np.maximum(np.where(np.isnan(first_event), 0.0, first_event), 1.0)
    last_goal = optional("days_since_last_goal_event")
    goal_recency = np.where(np.isnan(last_goal), NEVER_DAYS, last_goal)
    last_event = optional("days_since_last_event")
    event_recency = np.where(np.isnan(last_event), NEVER_DAYS, last_event)
    gap = optional("mean_days_between_goal_days")
    has_gap = ~np.isnan(gap) & (gap > 0.0)
    safe_gap = np.where(has_gap, gap, 1.0)
    overdue = np.where(has_gap, ln(goal_recency / safe_gap), 0.0)

    inputs = [
        ln(goal_recency),
        flag(goal_events_all > 0.0),
        ln(column("goal_events_7d")),
        ln(column("goal_events_30d")),
        ln(column("goal_events_90d")),
        ln(goal_events_all),
        ln(goal_days_all),
        ln(event_recency),
        ln(column("events_30d")),
        ln(column("events_90d")),
        ln(column("events_all")),
        ln(tenure),
        ln(column("goal_amount_all")),
        ln(column("goal_amount_90d")),
        ln(goal_days_all * horizon_days / tenure),
        overdue,
        flag(has_gap),
        flag(goal_recency < 14.0),
        flag(goal_recency < 30.0),
        flag(goal_recency < 60.0),
        flag(goal_recency < 90.0),
        flag(goal_recency < 150.0),
        flag(goal_recency < 240.0),
        flag(goal_days_all == 1.0),
        flag(goal_days_all == 2.0),
        flag(goal_days_all == 3.0),
        flag((goal_days_all >= 4.0) & (goal_days_all <= 5.0)),
        flag((goal_days_all >= 6.0) & (goal_days_all <= 9.0)),
    ]
    return np.column_stack(inputs)


def fnv1a_unit(user_ids: pa.Array) -> np.ndarray:
    """Map each user id to [0, 1]: FNV-1a 64-bit of its UTF-8 bytes divided by 2^64 - 1.

    goalcast samples training users by the same key. The hash runs over byte positions, all ids
    at once, with numpy's wrapping uint64 multiply.
    """
    strings = pc.cast(user_ids, pa.large_string())
    if strings.null_count:
        raise PeerError("user ids must not be null")
    strings = strings.combine_chunks() if isinstance(strings, pa.ChunkedArray) else strings
    _, offsets_buffer, data_buffer = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
        strings.offset : strings.offset + len(strings) + 1
    ]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer else np.zeros(0, np.uint8)
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    hashes = np.full(len(strings), 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    for position in range(int(lengths.max()) if len(lengths) else 0):
        rows = np.nonzero(lengths > position)[0]
        hashes[rows] ^= data[starts[rows] + position].astype(np.uint64)
        hashes[rows] *= prime
    # Rust's `u64::MAX as f64` rounds to 2^64, as float() does here.
    return hashes.astype(np.float64) / float(2**64 - 1)


# --- the model -------------------------------------------------------------------------------


class Model:
    """Standardization plus an L2-penalized logistic regression, as in src/predict/model.rs.

    linfa-logistic 0.8.1 minimizes sum(log-loss) + alpha / 2 * |w|^2 with an unpenalized
    intercept. scikit-learn's lbfgs minimizes C * sum(log-loss) + 1/2 * |w|^2 (computed as a
    mean), so C = 1 / alpha gives the same optimum. Both stop on a gradient of the mean loss
    below `tolerance`: goalcast's argmin 0.11 L-BFGS on the L2 norm (its tolerance is 1e-4 *
    rows on the summed loss), scipy's L-BFGS-B on the largest component. Both also stop after
    `max_iterations`, 200 in goalcast, so neither fit is exactly at the optimum.
    """

    def __init__(
        self, inputs: np.ndarray, outcomes: np.ndarray, settings: argparse.Namespace
    ) -> None:
        # Imported here because importing scikit-learn takes about a second, which the
        # nightly and query commands do not need.
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        self.scaler = StandardScaler()
        self.scaler.fit(inputs)
        # goalcast treats a column with a population std of 1e-9 or less as constant.
        std = np.sqrt(self.scaler.var_)
        self.scaler.scale_ = np.where(std > 1e-9, std, 1.0)
        self.regression = LogisticRegression(
            C=1.0 / settings.l2,
            solver="lbfgs",
            tol=settings.tolerance,
            max_iter=settings.max_iterations,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.regression.fit(self.scaler.transform(inputs), outcomes)
        self.iterations = int(self.regression.n_iter_[0])

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Return positive-outcome probabilities clipped to [1e-6, 1 - 1e-6], as goalcast does."""
        probabilities = self.regression.predict_proba(self.scaler.transform(inputs))[:, 1]
        return np.clip(probabilities, 1e-6, 1.0 - 1e-6)


def plan_cutoffs(start: int, horizon: int, first_event: int, max_cutoffs: int) -> list[int]:
    """Return the training cutoffs, most recent first (`plan_cutoffs` in src/predict/mod.rs)."""
    step = min(horizon, 30 * MICROS_PER_DAY)
    min_history = MIN_HISTORY_DAYS * MICROS_PER_DAY
    cutoffs = []
    for k in range(max_cutoffs):
        cutoff = start - horizon - k * step
        if cutoff - min_history < first_event:
            break
        cutoffs.append(cutoff)
    if len(cutoffs) < 2:
        raise PeerError(
            "not enough history: training needs two windows of the goal's length ending by the "
            f"start, each after {MIN_HISTORY_DAYS} days of history; choose a later start"
        )
    return cutoffs


def bucket_users(user_ids: pa.Array, achieve: np.ndarray) -> np.ndarray:
    """Bucket users by tertile of their percentile rank, ties broken by user id."""
    n = len(achieve)
    order = pc.sort_indices(
        pa.table({"achieve": achieve, "user_id": user_ids}),
        sort_keys=[("achieve", "ascending"), ("user_id", "ascending")],
    ).to_numpy()
    percentile = np.empty(n)
    percentile[order] = 100.0 * np.arange(n) / (n - 1) if n > 1 else 100.0
    return np.where(
        percentile >= 200.0 / 3.0,
        BUCKETS[0],
        np.where(percentile >= 100.0 / 3.0, BUCKETS[1], BUCKETS[2]),
    )


# --- commands --------------------------------------------------------------------------------


def create(args: argparse.Namespace) -> dict:
    """Predict a goal and write its scored target group, like `goalcast goal create`."""
    timer = StepTimer()
    warehouse = Path(args.warehouse)
    start = midnight_micros(dt.date.fromisoformat(args.as_of))
    end = midnight_micros(dt.date.fromisoformat(args.end_date) + DAY)
    horizon = end - start
    if horizon <= 0:
        raise PeerError(f"end date {args.end_date} is not after the start {args.as_of}")
    horizon_days = horizon / MICROS_PER_DAY

    with timer.step("setup"):
        con = connect(warehouse)
        register_goal_events(con, args.event, args.filter)
        first_event = con.sql("SELECT epoch_us(min(event_time)) FROM events").fetchall()[0][0]
        cutoffs = plan_cutoffs(start, horizon, first_event, args.max_windows)
    # The target group sizes the training sample, so it is evaluated first.
    with timer.step("segment"):
        target_users = register_segment(con, args.segment, start, table="target_group")
    if target_users == 0:
        raise PeerError(f"segment {args.segment!r} has no users at {args.as_of}")
    share = min(1.0, MAX_TRAINING_ROWS / (target_users * len(cutoffs)))

    windows = []
    for cutoff in cutoffs:
        with timer.step("segment"):
            register_segment(con, args.segment, cutoff)
            if share < 1.0:
                sample_population(con, share)
        with timer.step("features"):
            features = read_features(con, cutoff)
            inputs = model_inputs(features, horizon_days)
        with timer.step("labels"):
            positives = read_positives(con, cutoff, cutoff + horizon)
            outcomes = pc.is_in(features.column("user_id"), value_set=positives).to_numpy(
                zero_copy_only=False
            )
        windows.append({"cutoff": cutoff, "inputs": inputs, "outcomes": outcomes})

    rows = sum(len(window["outcomes"]) for window in windows)
    positives_count = int(sum(window["outcomes"].sum() for window in windows))
    if positives_count < MIN_POSITIVES or rows - positives_count < MIN_NEGATIVES:
        raise PeerError(
            f"too little history: {rows} training rows with {positives_count} positives; at "
            f"least {MIN_POSITIVES} positives and {MIN_NEGATIVES} negatives are needed"
        )

    with timer.step("training"):
        backtests = backtest(windows, args)
        model = Model(
            np.vstack([window["inputs"] for window in windows]),
            np.concatenate([window["outcomes"] for window in windows]),
            args,
        )

    con.sql("CREATE OR REPLACE TEMP TABLE population AS SELECT * FROM target_group")
    with timer.step("features"):
        target = read_features(con, start)
        target_inputs = model_inputs(target, horizon_days)
    with timer.step("scoring"):
        probabilities = model.predict(target_inputs)
    with timer.step("buckets"):
        achieve = probabilities if args.direction == "maximize" else 1.0 - probabilities
        target_ids = target.column("user_id").combine_chunks()
        buckets = bucket_users(target_ids, achieve)
    with timer.step("writes"):
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.table(
                {"user_id": target_ids, "probability": probabilities, "bucket": buckets}
            ),
            out / "predictions.parquet",
        )

    return {
        "target_users": len(target_ids),
        "predicted_count": float(probabilities.sum()),
        "training_rows": rows,
        "training_positives": positives_count,
        "sample_share": share,
        "cutoffs": [iso_time(cutoff) for cutoff in cutoffs],
        "iterations": model.iterations,
        "backtests": backtests,
        "buckets": {
            bucket: int((buckets == bucket).sum()) for bucket in BUCKETS
        },
        "predictions": str(out / "predictions.parquet"),
        "seconds": timer.rounded(),
    }


def backtest(windows: list[dict], settings: argparse.Namespace) -> list[dict]:
    """Predict each of the 3 most recent windows with a model of the older ones.

    This is goalcast's backtest. The most recent window also gets an AUC.
    """
    results = []
    for k in range(min(3, len(windows) - 1)):
        older = windows[k + 1 :]
        outcomes = np.concatenate([window["outcomes"] for window in older])
        if outcomes.all() or not outcomes.any():
            continue
        inputs = np.vstack([window["inputs"] for window in older])
        model = Model(inputs, outcomes, settings)
        held_out = windows[k]
        probabilities = model.predict(held_out["inputs"])
        actual = int(held_out["outcomes"].sum())
        result = {
            "users": len(held_out["outcomes"]),
            "predicted_count": float(probabilities.sum()),
            "actual_count": actual,
        }
        if k == 0 and 0 < actual < len(held_out["outcomes"]):
            from sklearn.metrics import roc_auc_score

            result["auc"] = float(roc_auc_score(held_out["outcomes"], probabilities))
        results.append(result)
    return results


def nightly(args: argparse.Namespace) -> dict:
    """Count each goal's performers per bucket and day through --date, like `goalcast run`."""
    timer = StepTimer()
    day = dt.date.fromisoformat(args.date)
    with timer.step("setup"):
        con = connect(Path(args.warehouse))
        goals = json.loads(Path(args.goals).read_text())
    tables = []
    summary = []
    for goal in goals:
        start_day = dt.date.fromisoformat(goal["start"])
        last_day = min(day, dt.date.fromisoformat(goal["end_date"]))
        if last_day < start_day:
            continue
        with timer.step("goal_daily"):
            register_goal_events(con, goal["events"], goal.get("filter"))
            through_day = last_day + DAY
            query = GOAL_DAILY.format(
                predictions=sql_text(goal["predictions"]),
                start=sql_time(midnight_micros(start_day)),
                through=sql_time(midnight_micros(through_day)),
                start_date=sql_date(start_day),
                through_date=sql_date(through_day),
                last_day=sql_date(last_day),
                goal_name=sql_text(goal["name"]),
            )
            table = con.sql(query).to_arrow_table()
        tables.append(table)
        final = table.filter(pc.equal(table.column("day"), pa.scalar(last_day, pa.date32())))
        summary.append(
            {
                "goal": goal["name"],
                "day": last_day.isoformat(),
                "performers": {
                    bucket: performers
                    for bucket, performers in zip(
                        final.column("bucket").to_pylist(), final.column("performers").to_pylist()
                    )
                },
            }
        )
    with timer.step("writes"):
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if tables:
            pq.write_table(pa.concat_tables(tables), out)
    return {"goals": summary, "seconds": timer.rounded()}


def query(args: argparse.Namespace) -> dict:
    """Run one read-only SQL query over `events` and `profiles`; write its rows as CSV."""
    timer = StepTimer()
    with timer.step("setup"):
        con = connect(Path(args.warehouse))
    with timer.step("query"):
        result = con.sql(args.sql).to_arrow_table()
    if args.out:
        with timer.step("writes"):
            pyarrow.csv.write_csv(result, args.out)
    return {"rows": result.num_rows, "seconds": timer.rounded()}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    create_parser = commands.add_parser("create", help="predict a goal and write its buckets")
    create_parser.add_argument("warehouse", help="goalcast warehouse folder")
    create_parser.add_argument(
        "--event", action="append", required=True, help="goal event name; repeat for several"
    )
    create_parser.add_argument("--as-of", required=True, help="goal start, YYYY-MM-DD (UTC)")
    create_parser.add_argument(
        "--end-date", required=True, help="last day of the goal, inclusive, YYYY-MM-DD (UTC)"
    )
    create_parser.add_argument("--filter", help="SQL condition on event columns")
    create_parser.add_argument("--segment", default="all_users", choices=sorted(SEGMENTS))
    create_parser.add_argument(
        "--direction", default="maximize", choices=["maximize", "minimize"]
    )
    create_parser.add_argument(
        "--max-windows", type=int, default=6, help="maximum number of training cutoffs"
    )
    create_parser.add_argument(
        "--l2", type=float, default=L2, help="linfa's alpha: L2 penalty on the summed log-loss"
    )
    create_parser.add_argument(
        "--max-iterations",
        type=int,
        default=200,
        help="maximum L-BFGS iterations per fit; goalcast's linfa fit stops at 200",
    )
    create_parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="gradient tolerance on the mean log-loss; goalcast's linfa fit uses 1e-4",
    )
    create_parser.add_argument("--out", required=True, help="folder for predictions.parquet")

    nightly_parser = commands.add_parser("nightly", help="count performers per bucket and day")
    nightly_parser.add_argument("warehouse")
    nightly_parser.add_argument(
        "--goals",
        required=True,
        help="JSON list of goals: name, events, filter, start, end_date, predictions",
    )
    nightly_parser.add_argument("--date", required=True, help="last day to count, YYYY-MM-DD")
    nightly_parser.add_argument("--out", required=True, help="Parquet file of the daily rows")

    query_parser = commands.add_parser("query", help="run one SQL query")
    query_parser.add_argument("warehouse")
    query_parser.add_argument("--sql", required=True, help="the query")
    query_parser.add_argument("--out", help="CSV file for the rows")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = {"create": create, "nightly": nightly, "query": query}[args.command]
    try:
        result = command(args)
    except (PeerError, duckdb.Error) as error:
        print(f"peer {args.command} failed: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
