#!/usr/bin/env bash
# Times the nightly job for 5 active goals on a generated warehouse: one ordinary night, a
# replay of the following nights, and the night that closes all 5 goals. Prints wall time, CPU
# time and peak memory of each step.
#
# Usage: bash bench/nightly.sh [USERS] [DAYS] [FOLDER]
# Defaults: 1000000 users, 730 days (13.3M events with seed 11), /tmp/goalcast-nightly-<USERS>.
# The data ends yesterday, because the nightly job counts finished days only. Builds the
# release binary; the folder is replaced.
set -euo pipefail
cd "$(dirname "$0")/.."

users=${1:-1000000}
days=${2:-730}
folder=${3:-/tmp/goalcast-nightly-$users}
bin=${CARGO_TARGET_DIR:-target}/release/goalcast
export GOALCAST_NO_PROGRESS=1

cargo build --release --quiet --bin goalcast

measure() {
    local label=$1
    shift
    /usr/bin/time -f "$label: %e s wall, %U s user, %S s system, %M KiB peak RSS" "$@"
}

rm -rf "$folder"
first_day=$(date -u -d "today - $days days" +%F)
measure "generate $users users x $days days" "$bin" --warehouse "$folder" generate \
    --users "$users" --days "$days" --seed 11 --start-date "$first_day"
"$bin" --warehouse "$folder" sql "SELECT count(*) AS events FROM events"

# Five 30-day goals starting 30 days before the data ends, on different events and segments.
start=$(date -u -d "$first_day + $((days - 30)) days" +%F)
end=$(date -u -d "$first_day + $((days - 1)) days" +%F)
create() {
    local name=$1
    shift
    measure "goal create $name" "$bin" --warehouse "$folder" goal create --name "$name" \
        --end-date "$end" --as-of "$start" --max-windows 2 "$@" > /dev/null
}
create buyers --event Charged
create carts --event "Add To Cart"
create big_buyers --event Charged --filter "amount >= 50"
create sf_buyers --event Charged --segment san_francisco
create uninstalls --event "App Uninstalled" --direction minimize
"$bin" --warehouse "$folder" goal engage 1 --bucket moderately > /dev/null

first_night=$(date -u -d "$start + 9 days" +%F)
measure "nightly run, 5 goals, catch-up of 10 days to $first_night" \
    "$bin" --warehouse "$folder" run --from "$start" --to "$first_night"
next_night=$(date -u -d "$first_night + 1 day" +%F)
measure "nightly run, 5 goals, one night ($next_night)" \
    "$bin" --warehouse "$folder" run --date "$next_night"
measure "nightly run, 5 goals, same night again (rerun)" \
    "$bin" --warehouse "$folder" run --date "$next_night"
before_end=$(date -u -d "$end - 1 day" +%F)
"$bin" --warehouse "$folder" run --from "$(date -u -d "$next_night + 1 day" +%F)" \
    --to "$before_end" > /dev/null
measure "nightly run, 5 goals, closing night ($end)" \
    "$bin" --warehouse "$folder" run --date "$end"
"$bin" --warehouse "$folder" sql "SELECT goal_id, bucket, arm, users, performers, \
    round(predicted_performers) AS predicted, round(error_percent, 1) AS error_percent \
    FROM goal_results WHERE bucket = 'All' ORDER BY goal_id, arm"
