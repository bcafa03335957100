#!/usr/bin/env bash
# Start a Dask scheduler and N workers on this host (loopback by default), for
# `bigcat process --scheduler ...`. Stop them with stop.sh (it stops exactly these processes).
#
#   deploy/local/start.sh [N]            N workers (default 2)
#
# Settings (environment):
#   BIGCAT_DASK_STATE      state directory: PIDs, logs, scheduler file   [./.bigcat-dask]
#   BIGCAT_DASK_HOST       interface to listen on                        [127.0.0.1]
#   BIGCAT_DASK_PORT       scheduler port (0 = any free port)            [8786]
#   BIGCAT_DASHBOARD_PORT  dashboard port (0 = any free port)            [8787]
#   BIGCAT_DASK_THREADS    threads per worker                            [1]
#   BIGCAT_DASK_MEMORY     memory limit per worker                       [auto]
#   BIGCAT_DASK_NANNY      1 = workers run under a nanny (restarted if they die), 0 = not  [1]
#   PYTHON                 interpreter that has bigcat installed          [python3]
set -euo pipefail

n_workers="${1:-2}"
state="${BIGCAT_DASK_STATE:-./.bigcat-dask}"
host="${BIGCAT_DASK_HOST:-127.0.0.1}"
port="${BIGCAT_DASK_PORT:-8786}"
dash_port="${BIGCAT_DASHBOARD_PORT:-8787}"
threads="${BIGCAT_DASK_THREADS:-1}"
memory="${BIGCAT_DASK_MEMORY:-auto}"
nanny="${BIGCAT_DASK_NANNY:-1}"
python="${PYTHON:-python3}"

if ! [[ "$n_workers" =~ ^[1-9][0-9]*$ ]]; then
    echo "start.sh: N must be a positive number of workers, not '$n_workers'." >&2
    exit 2
fi

mkdir -p "$state"
state="$(cd "$state" && pwd)"
if [[ -s "$state/pids" ]]; then
    echo "start.sh: $state/pids already lists processes of an earlier start; run stop.sh first" \
         "(or choose another BIGCAT_DASK_STATE)." >&2
    exit 1
fi
rm -f "$state/scheduler.json" "$state"/*.pid

# starttime (clock ticks after boot) of a PID, from /proc/PID/stat field 22: with the PID it
# identifies a process for good, so stop.sh never signals a process that reused the number.
starttime() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }

# Start "$@" in its own session (PGID = SID = its PID), wait for its pid file, record it.
launch() {
    local role="$1" pidfile="$2"; shift 2
    setsid "$@" >"$state/$role.log" 2>&1 < /dev/null &
    local i pid=""
    for i in $(seq 1 200); do
        [[ -s "$pidfile" ]] && pid="$(cat "$pidfile")" && break
        sleep 0.1
    done
    if [[ -z "$pid" ]]; then
        echo "start.sh: $role did not start; see $state/$role.log:" >&2
        tail -n 20 "$state/$role.log" >&2 || true
        exit 1
    fi
    echo "$role $pid $(starttime "$pid")" >> "$state/pids"
}

launch scheduler "$state/scheduler.pid" \
    "$python" -m dask scheduler --host "$host" --port "$port" \
    --dashboard-address "$host:$dash_port" \
    --scheduler-file "$state/scheduler.json" --pid-file "$state/scheduler.pid"

for i in $(seq 1 200); do [[ -s "$state/scheduler.json" ]] && break; sleep 0.1; done
if [[ ! -s "$state/scheduler.json" ]]; then
    echo "start.sh: the scheduler wrote no $state/scheduler.json; see $state/scheduler.log" >&2
    exit 1
fi

nanny_flag="--nanny"; [[ "$nanny" == "0" ]] && nanny_flag="--no-nanny"
for i in $(seq 1 "$n_workers"); do
    launch "worker-$i" "$state/worker-$i.pid" \
        "$python" -m dask worker --scheduler-file "$state/scheduler.json" \
        --name "local-$i" --host "$host" --nthreads "$threads" --memory-limit "$memory" \
        --dashboard-address "$host:0" --local-directory "$state/worker-$i" \
        --death-timeout 60 "$nanny_flag" --pid-file "$state/worker-$i.pid"
done

# Wait until all workers have joined, then print where things are.
"$python" - "$state/scheduler.json" "$n_workers" "$host" > "$state/env" <<'PY'
import json, sys
from distributed import Client
path, n, host = sys.argv[1], int(sys.argv[2]), sys.argv[3]
info = json.load(open(path))
with Client(scheduler_file=path, timeout="30s") as client:
    client.wait_for_workers(n, timeout=120)
dash = info.get("services", {}).get("dashboard")
print(f"DASK_SCHEDULER_ADDRESS={info['address']}")
print(f"BIGCAT_DASHBOARD=http://{host}:{dash}/status" if dash else "BIGCAT_DASHBOARD=")
PY
# shellcheck disable=SC1091
source "$state/env"
echo "scheduler: $DASK_SCHEDULER_ADDRESS"
echo "dashboard: $BIGCAT_DASHBOARD"
echo "workers:   $n_workers (state, logs and PIDs in $state)"
echo "run:       bigcat process --scheduler $DASK_SCHEDULER_ADDRESS --out \$PWD/bigcat-run"
echo "stop:      BIGCAT_DASK_STATE=$state $(dirname "$0")/stop.sh"
