#!/usr/bin/env bash
# Formats the results.tsv files that bench/run.sh writes as Markdown tables.
#
# Usage: bash bench/report.sh table RESULTS.tsv
#        bash bench/report.sh growth SMALL/results.tsv LARGE/results.tsv
# `table` prints one row per stage with both tools side by side. `growth` prints how each
# stage's wall time grew from the smaller run to the larger one, next to the growth in events.
set -euo pipefail

case ${1:-} in
    table)
        awk -F'\t' '
            function duration(s) { return s >= 100 ? sprintf("%.0f s", s) : sprintf("%.1f s", s) }
            function memory(kib) {
                return kib >= 1048576 ? sprintf("%.2f GiB", kib / 1048576) \
                    : sprintf("%.0f MiB", kib / 1024)
            }
            function rate(events, s) {
                if (s <= 0) return "-"
                return events / s >= 1e6 ? sprintf("%.2fM", events / s / 1e6) \
                    : sprintf("%.0fk", events / s / 1e3)
            }
            NR == 1 { next }
            {
                if (!($1 in seen)) { seen[$1] = 1; order[++stages] = $1 }
                wall[$1, $2] = $3; cpu[$1, $2] = $4; rss[$1, $2] = $5; events = $6
                other[$1, $2] = $7
                if ($7 > max_other) max_other = $7
            }
            END {
                print "| stage | goalcast wall | goalcast CPU | goalcast peak RSS | peer wall " \
                    "| peer CPU | peer peak RSS | peer / goalcast wall | events/s goalcast " \
                    "| events/s peer |"
                print "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
                for (i = 1; i <= stages; i++) {
                    s = order[i]
                    line = "| " s " | " duration(wall[s, "goalcast"]) " | " \
                        duration(cpu[s, "goalcast"]) " | " memory(rss[s, "goalcast"])
                    if ((s, "peer") in wall) {
                        ratio = wall[s, "goalcast"] > 0 ? \
                            sprintf("%.2f", wall[s, "peer"] / wall[s, "goalcast"]) : "-"
                        line = line " | " duration(wall[s, "peer"]) " | " \
                            duration(cpu[s, "peer"]) " | " memory(rss[s, "peer"]) " | " ratio \
                            " | " rate(events, wall[s, "goalcast"]) " | " \
                            rate(events, wall[s, "peer"]) " |"
                    } else {
                        line = line " | - | - | - | - | " rate(events, wall[s, "goalcast"]) " | - |"
                    }
                    print line
                }
                # Listed when other processes used a CPU-second or more during some stage,
                # because they then shared the 2 cores with the tool being timed.
                if (max_other >= 1) {
                    print ""
                    printf "CPU time of other processes during each stage (goalcast, peer):"
                    for (i = 1; i <= stages; i++) {
                        s = order[i]
                        printf "%s %s %.0f s", (i > 1 ? ";" : ""), s, other[s, "goalcast"]
                        if ((s, "peer") in other) printf ", %.0f s", other[s, "peer"]
                    }
                    print "."
                }
            }
        ' "$2"
        ;;
    growth)
        awk -F'\t' '
            FNR == 1 { file++; next }
            file == 1 { small[$1, $2] = $3; small_events = $6 }
            file == 2 {
                if (!(($1, $2) in seen)) { seen[$1, $2] = 1; order[++rows] = $1 SUBSEP $2 }
                large[$1, $2] = $3; large_events = $6
            }
            END {
                printf "Growth from %d to %d events (x%.2f):\n\n", small_events, large_events, \
                    large_events / small_events
                print "| stage | tool | wall, small | wall, large | wall growth |"
                print "| --- | --- | --- | --- | --- |"
                for (i = 1; i <= rows; i++) {
                    split(order[i], key, SUBSEP)
                    if (!(order[i] in small)) continue
                    growth = small[order[i]] > 0 ? large[order[i]] / small[order[i]] : 0
                    printf "| %s | %s | %.1f s | %.1f s | x%.2f |\n", key[1], key[2], \
                        small[order[i]], large[order[i]], growth
                }
            }
        ' "$2" "$3"
        ;;
    *)
        echo "usage: bash bench/report.sh table RESULTS.tsv | growth SMALL.tsv LARGE.tsv" >&2
        exit 2
        ;;
esac
