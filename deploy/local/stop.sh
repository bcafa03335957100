#!/usr/bin/env bash
# Stop exactly the processes start.sh started (listed in $BIGCAT_DASK_STATE/pids), and nothing
# else: a recorded PID is signalled only while its start time still matches the record, so a
# number reused by another process is left alone. A worker's nanny child runs in the session
# start.sh created for it and is stopped with it, even if the nanny itself is gone.
#
#   BIGCAT_DASK_STATE=./.bigcat-dask deploy/local/stop.sh [TIMEOUT_SECONDS]
set -euo pipefail

state="${BIGCAT_DASK_STATE:-./.bigcat-dask}"
timeout="${1:-20}"
pids_file="$state/pids"
if [[ ! -f "$pids_file" ]]; then
    echo "stop.sh: no $pids_file: nothing was started from this state directory." >&2
    exit 0
fi

# Fields of /proc/PID/stat after "PID (comm) ": [1]=ppid ... [3]=session ... [19]=starttime.
# Read with bash builtins only (no fork per process), so a scan of /proc takes milliseconds.
stat_fields() {
    local line
    { read -r line < "/proc/$1/stat"; } 2>/dev/null || return 1
    echo "${line##*) }"
}
starttime() { local f; f=($(stat_fields "$1")) || return 0; echo "${f[19]}"; }

# Our processes now alive: each recorded PID whose start time matches, plus every process in
# the session that PID leads (started by it, so not older than it).
ours() {
    local role pid start p f
    local -a records=()
    while read -r role pid start; do
        [[ -n "$pid" ]] && records+=("$pid:$start")
    done < "$pids_file"
    for p in /proc/[0-9]*; do
        p="${p#/proc/}"
        f=($(stat_fields "$p")) || continue
        for r in "${records[@]}"; do
            pid="${r%%:*}" start="${r##*:}"
            if [[ "$p" == "$pid" && "${f[19]}" == "$start" ]] \
                || [[ "$p" != "$pid" && "${f[3]}" == "$pid" && "${f[19]}" -ge "$start" ]]; then
                echo "$p"
                break
            fi
        done
    done
}

signal_all() {
    local sig="$1" p
    for p in $(ours); do kill "-$sig" "$p" 2>/dev/null || true; done
}

# Workers first (they close cleanly while the scheduler is up), then the scheduler.
while read -r role pid start; do
    if [[ "$role" == worker-* && "$(starttime "$pid")" == "$start" ]]; then
        kill -TERM "$pid" 2>/dev/null || true
    fi
done < "$pids_file"
sleep 1
signal_all TERM
for _ in $(seq 1 $((timeout * 10))); do
    [[ -z "$(ours)" ]] && break
    sleep 0.1
done
left="$(ours | tr '\n' ' ')"
if [[ -n "$left" ]]; then
    echo "stop.sh: still running after ${timeout}s, sending SIGKILL to: $left" >&2
    signal_all KILL
    sleep 0.5
fi
left="$(ours | tr '\n' ' ')"
if [[ -n "$left" ]]; then
    echo "stop.sh: could not stop: $left" >&2
    exit 1
fi
mv "$pids_file" "$pids_file.stopped"
rm -f "$state/scheduler.json" "$state"/*.pid "$state/env"
echo "stop.sh: stopped every process started from $state."
