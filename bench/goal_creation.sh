#!/usr/bin/env bash
# Generates a warehouse and times goal creation on it, then measures the prediction against
# the generator's truth. Prints wall time and peak memory of each step.
#
# Usage: bash bench/goal_creation.sh [USERS] [DAYS] [FOLDER]
# Defaults: 1000000 users, 365 days, /tmp/goalcast-bench-<USERS>. Needs a release build
# (cargo build --release --examples); the folder is replaced.
set -euo pipefail
cd "$(dirname "$0")/.."

users=${1:-1000000}
days=${2:-365}
folder=${3:-/tmp/goalcast-bench-$users}
bin=target/release/goalcast
export GOALCAST_NO_PROGRESS=1

cargo build --release --quiet --bin goalcast --example goal_accuracy

measure() {
    local label=$1
    shift
    /usr/bin/time -f "$label: %e s wall, %U s user, %S s system, %M KiB peak RSS" "$@"
}

rm -rf "$folder"
measure "generate $users users x $days days" "$bin" --warehouse "$folder" generate --users "$users" --days "$days" --seed 7
"$bin" --warehouse "$folder" sql "SELECT count(*) AS events, min(event_time) AS first, max(event_time) AS last FROM events"

# A 30-day Charged goal starting 30 days before the data ends.
start=$(date -u -d "2026-01-01 + $((days - 30)) days" +%F)
end=$(date -u -d "2026-01-01 + $((days - 1)) days" +%F)
measure "goal create" "$bin" --warehouse "$folder" goal create --name bench --event Charged \
    --end-date "$end" --as-of "$start" --max-active-goals 100 > /dev/null
"$bin" --warehouse "$folder" goal list
measure "accuracy check" target/release/examples/goal_accuracy "$folder" "$start" "$end" Charged
