#!/usr/bin/env bash
# Times goalcast against a DuckDB + scikit-learn peer (bench/peer/peer.py) on one generated
# warehouse: goal creation, creating the 5 goals of bench/nightly.sh, one nightly run for those
# 5 goals, and an ad-hoc query. Prints a Markdown table of wall time, CPU time (user + system)
# and peak RSS per stage and tool. Then checks that both tools agree, with predicted counts
# within 1%, the same performers in the nightly counts and the same query result, and exits 1
# when they do not.
#
# Usage: bash bench/run.sh [--users N] [--days D] [--seed S] [--folder DIR] [--venv DIR]
#                          [--compare DIR]
# Defaults: 1000000 users, 1500 days (about 16M events), seed 7, folder
# /tmp/goalcast-scale-<USERS>, venv .venv-bench in the repository. --compare prints how times
# grew from the results of an earlier run in DIR.
#
# Environment:
#   GOALCAST_BIN  goalcast binary to time; when unset, builds the release binary
#                 ${CARGO_TARGET_DIR:-target}/release/goalcast.
#   PYTHON        Python for the peer, with bench/peer/requirements.txt installed; when unset,
#                 the venv is created (or refreshed when the requirements change) and used.
#
# The folder is replaced. The data ends yesterday, because the nightly job counts finished days
# only. Results stay in DIR/results.tsv (one line per stage and tool) for --compare.
set -euo pipefail
caller=$(pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)

# Prints a path given relative to the caller's folder as an absolute one.
absolute() {
    case $1 in
        /*) echo "$1" ;;
        *) echo "$caller/$1" ;;
    esac
}

users=1000000
days=1500
seed=7
folder=
venv=$repo/.venv-bench
compare=
while [ $# -gt 0 ]; do
    case $1 in
        --users) users=$2; shift 2 ;;
        --days) days=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --folder) folder=$(absolute "$2"); shift 2 ;;
        --venv) venv=$(absolute "$2"); shift 2 ;;
        --compare) compare=$(absolute "$2"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/run.sh: unknown argument $1; see bench/run.sh --help" >&2; exit 2 ;;
    esac
done
folder=${folder:-/tmp/goalcast-scale-$users}
# The folder is deleted below, so it must be new, empty, or the folder of an earlier run.
if [ -e "$folder" ] && [ -n "$(ls -A "$folder")" ] && [ ! -f "$folder/results.tsv" ]; then
    echo "bench/run.sh: folder $folder is not empty and contains no results.tsv of an earlier" \
        "run; pick a new folder" >&2
    exit 2
fi
if [ -n "${GOALCAST_BIN:-}" ]; then
    GOALCAST_BIN=$(absolute "$GOALCAST_BIN")
fi
if [ -n "${PYTHON:-}" ]; then
    PYTHON=$(absolute "$PYTHON")
fi
cd "$repo"
export GOALCAST_NO_PROGRESS=1

# --- tools -----------------------------------------------------------------------------------

if [ -z "${GOALCAST_BIN:-}" ]; then
    cargo build --release --quiet --bin goalcast
    GOALCAST_BIN=${CARGO_TARGET_DIR:-target}/release/goalcast
fi
goalcast=$(realpath "$GOALCAST_BIN")
if [ ! -x "$goalcast" ]; then
    echo "bench/run.sh: goalcast binary $GOALCAST_BIN not found or not executable" >&2
    exit 2
fi

if [ -z "${PYTHON:-}" ]; then
    stamp=$venv/.requirements.sha256
    wanted=$(sha256sum bench/peer/requirements.txt | cut -d' ' -f1)
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        echo "Preparing $venv from bench/peer/requirements.txt"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/peer/requirements.txt
        echo "$wanted" > "$stamp"
    fi
    PYTHON=$venv/bin/python
fi
python=$PYTHON
peer=("$python" "$repo/bench/peer/peer.py")

# --- measurement -----------------------------------------------------------------------------

rm -rf "$folder"
mkdir -p "$folder/times" "$folder/goalcast" "$folder/peer"
warehouse=$folder/warehouse
results=$folder/results.tsv
printf 'stage\ttool\twall_s\tcpu_s\trss_kib\tevents\tother_cpu_s\n' > "$results"

# Prints the CPU seconds all processes have spent since boot, from /proc/stat.
busy_seconds() {
    awk -v ticks="$(getconf CLK_TCK)" \
        '$1 == "cpu" { print ($2 + $3 + $4 + $7 + $8 + $9) / ticks; exit }' /proc/stat
}

# measure NAME COMMAND...: runs the command with its standard output in $folder/NAME.out.
# $folder/times/NAME gets wall seconds, user seconds, system seconds, peak RSS in KiB, and the
# CPU seconds that other processes used meanwhile, which show whether the step had the machine
# to itself.
measure() {
    local name=$1
    shift
    local busy_before busy_after
    busy_before=$(busy_seconds)
    if ! /usr/bin/time -f '%e %U %S %M' -o "$folder/times/$name" "$@" > "$folder/$name.out"; then
        echo "bench/run.sh: step $name failed: $*" >&2
        exit 1
    fi
    busy_after=$(busy_seconds)
    awk -v before="$busy_before" -v after="$busy_after" '{
        other = after - before - $2 - $3
        if (other < 0) other = 0
        printf "%s %s %s %s %.2f\n", $1, $2, $3, $4, other
    }' "$folder/times/$name" > "$folder/times/$name.tmp"
    mv "$folder/times/$name.tmp" "$folder/times/$name"
}

# record STAGE TOOL NAME...: adds the times of one or more measured steps as one stage.
record() {
    local stage=$1 tool=$2
    shift 2
    local files=()
    for name in "$@"; do files+=("$folder/times/$name"); done
    awk -v stage="$stage" -v tool="$tool" -v events="$events" '
        { wall += $1; cpu += $2 + $3; if ($4 > rss) rss = $4; other += $5 }
        END {
            printf "%s\t%s\t%.2f\t%.2f\t%d\t%d\t%.2f\n", stage, tool, wall, cpu, rss, events, other
        }
    ' "${files[@]}" >> "$results"
}

json_field() {
    "$python" -c 'import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2:]:
    value = value[int(key) if isinstance(value, list) else key]
print(value)' "$@"
}

first_day=$(date -u -d "today - $days days" +%F)
echo "Generating $users users over $days days from $first_day (seed $seed) in $warehouse"
events=0
measure generate "$goalcast" --warehouse "$warehouse" generate --users "$users" --days "$days" \
    --seed "$seed" --start-date "$first_day"
events=$("$goalcast" --warehouse "$warehouse" sql --format csv \
    "SELECT count(*) AS events FROM events" | tail -n 1)
record "generate (goalcast only)" goalcast generate
echo "Generated $events events"

# A 30-day goal starting 30 days before the data ends; the nightly run counts its first 29 days
# and leaves the goals active.
start=$(date -u -d "$first_day + $((days - 30)) days" +%F)
end=$(date -u -d "$first_day + $((days - 1)) days" +%F)
night=$(date -u -d "$end - 1 day" +%F)

# Goal creation: one Charged goal on all users with the default 6 training windows.
echo "Goal creation: Charged on all_users, $start to $end"
measure goal-scale_charged-goalcast "$goalcast" --warehouse "$warehouse" goal create \
    --name scale_charged --event Charged --end-date "$end" --as-of "$start" --format json
record "goal creation (6 windows)" goalcast goal-scale_charged-goalcast
measure goal-scale_charged-peer "${peer[@]}" create "$warehouse" --event Charged \
    --end-date "$end" --as-of "$start" --out "$folder/peer/scale_charged"
record "goal creation (6 windows)" peer goal-scale_charged-peer
# Archived so that the nightly run below counts only the 5 goals of bench/nightly.sh.
"$goalcast" --warehouse "$warehouse" goal archive \
    "$(json_field "$folder/goal-scale_charged-goalcast.out" saved goal_id)" > /dev/null

# The 5 goals of bench/nightly.sh: name, then goal options shared by goalcast and the peer.
goal_specs=(
    "buyers|--event|Charged"
    "carts|--event|Add To Cart"
    "big_buyers|--event|Charged|--filter|amount >= 50"
    "sf_buyers|--event|Charged|--segment|san_francisco"
    "uninstalls|--event|App Uninstalled|--direction|minimize"
)
goal_names=()
goalcast_steps=()
peer_steps=()
for spec in "${goal_specs[@]}"; do
    IFS='|' read -r -a fields <<< "$spec"
    name=${fields[0]}
    options=("${fields[@]:1}")
    echo "Creating goal $name: ${options[*]}"
    measure "goal-$name-goalcast" "$goalcast" --warehouse "$warehouse" goal create \
        --name "$name" --end-date "$end" --as-of "$start" --max-windows 2 \
        --format json "${options[@]}"
    # The peer takes goalcast's goal options under the same names.
    measure "goal-$name-peer" "${peer[@]}" create "$warehouse" --end-date "$end" \
        --as-of "$start" --max-windows 2 --out "$folder/peer/$name" "${options[@]}"
    goal_names+=("$name")
    goalcast_steps+=("goal-$name-goalcast")
    peer_steps+=("goal-$name-peer")
done
record "create the 5 nightly goals (2 windows each)" goalcast "${goalcast_steps[@]}"
record "create the 5 nightly goals (2 windows each)" peer "${peer_steps[@]}"

# The peer's nightly input: each goal's definition, as goalcast stored it, and the peer's own
# predictions.
"$python" - "$folder" "$start" "${goal_names[@]}" > "$folder/peer/goals.json" <<'EOF'
import json, sys
folder, start, names = sys.argv[1], sys.argv[2], sys.argv[3:]
goals = []
for name in names:
    goal = json.load(open(f"{folder}/goal-{name}-goalcast.out"))["goal"]
    goals.append({
        "name": goal["name"],
        "events": goal["event_names"],
        "filter": goal["event_filter"],
        "start": start,
        "end_date": goal["end_date"],
        "predictions": f"{folder}/peer/{name}/predictions.parquet",
    })
print(json.dumps(goals, indent=2))
EOF

echo "Nightly run for 5 goals on $night"
measure nightly-goalcast "$goalcast" --warehouse "$warehouse" run --date "$night" --format json
record "nightly run, 5 goals" goalcast nightly-goalcast
measure nightly-peer "${peer[@]}" nightly "$warehouse" --goals "$folder/peer/goals.json" \
    --date "$night" --out "$folder/peer/goal_daily.parquet"
record "nightly run, 5 goals" peer nightly-peer

# The ad-hoc query: events and distinct users per event name over the last 30 days.
query="SELECT event_name, count(*) AS events, count(DISTINCT user_id) AS users FROM events \
WHERE event_date >= DATE '$start' GROUP BY event_name ORDER BY event_name"
echo "Ad-hoc query: $query"
measure query-goalcast "$goalcast" --warehouse "$warehouse" sql --format csv \
    --output "$folder/goalcast/query.csv" "$query"
record "ad-hoc query" goalcast query-goalcast
measure query-peer "${peer[@]}" query "$warehouse" --sql "$query" --out "$folder/peer/query.csv"
record "ad-hoc query" peer query-peer

# --- report ----------------------------------------------------------------------------------

echo
echo "## $users users, $events events ($days days, seed $seed)"
echo
echo "goalcast: $goalcast"
"$python" -c 'import duckdb, numpy, sklearn
print(f"peer: DuckDB {duckdb.__version__}, scikit-learn {sklearn.__version__}, "
      f"numpy {numpy.__version__}")'
echo
bash "$repo/bench/report.sh" table "$results"

# --- agreement -------------------------------------------------------------------------------

# Performers through the counted day do not depend on the model, so the check wants them equal.
"$goalcast" --warehouse "$warehouse" sql --format csv --output "$folder/goalcast/performers.csv" \
    "SELECT goals.name AS goal, goal_daily.performers FROM goal_daily \
     JOIN goals ON goals.goal_id = goal_daily.goal_id \
     WHERE goal_daily.bucket = 'All' AND goal_daily.arm = 'all' AND goal_daily.day = '$night'"
echo
agreement=0
"$python" "$repo/bench/check_agreement.py" "$folder" --night "$night" scale_charged \
    "${goal_names[@]}" || agreement=$?

if [ -n "$compare" ]; then
    echo
    bash "$repo/bench/report.sh" growth "$compare/results.tsv" "$results"
fi

if [ "$agreement" -ne 0 ]; then
    echo "bench/run.sh: goalcast and the peer disagree; see the checks above" >&2
    exit 1
fi
