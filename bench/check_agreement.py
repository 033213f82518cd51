#!/usr/bin/env python3
"""Check that goalcast and the peer agree on one bench/run.sh folder.

Checks, each printed with both values:
- predicted count of each goal: within 1% of goalcast's (the two fit the same objective on
  the same rows, so they differ only by where each solver stops);
- performers of each goal through the nightly run's day: equal, since they do not depend
  on the model;
- the ad-hoc query: the same rows.

Ends with a line "agreement: N passed, N failed" and exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

MAX_RELATIVE_DIFFERENCE = 0.01


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the --folder of bench/run.sh")
    parser.add_argument("--night", required=True, help="day of the nightly run, YYYY-MM-DD")
    parser.add_argument("goals", nargs="+", help="goal names; NAME's outputs are goal-NAME-*.out")
    args = parser.parse_args(argv)
    folder = args.folder
    results = []

    print("Agreement of goalcast and the peer:")
    for name in args.goals:
        goalcast = json.loads((folder / f"goal-{name}-goalcast.out").read_text())
        peer = json.loads((folder / f"goal-{name}-peer.out").read_text())
        goalcast_count = goalcast["prediction"]["predicted_count"]
        peer_count = peer["predicted_count"]
        difference = (peer_count - goalcast_count) / max(goalcast_count, 1.0)
        passed = abs(difference) <= MAX_RELATIVE_DIFFERENCE
        results.append(passed)
        print(
            f"  predicted count, {name}: goalcast {goalcast_count:.1f}, peer {peer_count:.1f}, "
            f"difference {100 * difference:+.3f}%: "
            + ("ok" if passed else "FAILED, more than 1% apart")
        )

    night = dt.date.fromisoformat(args.night)
    with open(folder / "goalcast" / "performers.csv", newline="") as file:
        goalcast_performers = {row["goal"]: int(row["performers"]) for row in csv.DictReader(file)}
    peer_performers = {
        row["goal"]: row["performers"]
        for row in pq.read_table(folder / "peer" / "goal_daily.parquet").to_pylist()
        if row["bucket"] == "All" and row["day"] == night
    }
    for name in sorted(set(goalcast_performers) | set(peer_performers)):
        goalcast_value = goalcast_performers.get(name)
        peer_value = peer_performers.get(name)
        passed = goalcast_value == peer_value
        results.append(passed)
        print(
            f"  performers through {night}, {name}: goalcast {goalcast_value}, "
            f"peer {peer_value}: " + ("ok" if passed else "FAILED, not equal")
        )

    # The two CSV writers quote differently, so rows are compared after parsing.
    rows = {}
    for tool in ("goalcast", "peer"):
        with open(folder / tool / "query.csv", newline="") as file:
            rows[tool] = list(csv.reader(file))
    passed = rows["goalcast"] == rows["peer"] and len(rows["goalcast"]) > 1
    results.append(passed)
    print(
        f"  ad-hoc query: goalcast {len(rows['goalcast']) - 1} rows, peer "
        f"{len(rows['peer']) - 1} rows: "
        + ("ok, the same rows" if passed else "FAILED, compare the two query.csv files")
    )

    failed = results.count(False)
    print(f"agreement: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
