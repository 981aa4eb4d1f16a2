#!/usr/bin/env bash
# Stop the dev cluster started by start.sh. Exits 0 even when nothing runs.
set -uo pipefail
DIR=${SLURM_DEV_DIR:-/tmp/slurm-dev}
export SLURM_CONF=$DIR/slurm.conf
log() { echo "slurm dev cluster: $*" >&2; }

# Cancel jobs first: a stopped slurmd leaves its job processes running.
pid=$(cat "$DIR/slurmctld.pid" 2>/dev/null)   # a dead slurmctld: clients retry 9 s
if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slurmctld ] && timeout 5 squeue -h >/dev/null 2>&1; then
    timeout 5 squeue -h -o %A | xargs -r scancel
    # Bounded: a job that ignores SIGTERM is SIGKILLed after KillWait (10 s).
    for _ in $(seq 60); do
        [ -z "$(timeout 5 squeue -h -o %A 2>/dev/null)" ] && break
        sleep 0.5
    done
fi

stop_pidfile() {  # NAME PIDFILE: TERM, wait up to 5 s, then KILL
    local pid
    pid=$(cat "$2" 2>/dev/null) || return 0
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 0   # stale pid file
    kill "$pid"
    for _ in $(seq 20); do
        kill -0 "$pid" 2>/dev/null || { log "stopped $1 ($pid)"; return 0; }
        sleep 0.25
    done
    kill -9 "$pid" 2>/dev/null; log "killed $1 ($pid)"
}
for pidfile in "$DIR"/slurmd-*.pid "$DIR/slurmd.pid"; do   # each takes ~2 s to exit: in parallel
    stop_pidfile slurmd "$pidfile" &
done
stop_pidfile slurmctld "$DIR/slurmctld.pid" &
stop_pidfile slurmdbd "$DIR/slurmdbd.pid" &
stop_pidfile mariadbd "$DIR/mysql/mysql.pid" &
wait
# The nodes' network namespaces (two or more nodes): what still runs in them (a job's process that outlived
# its slurmd) is killed; then the namespaces (their veth pairs go with them), the bridge, their hosts files.
for node in $( (cat "$DIR/netns"; grep -l slurm/dev-cluster /etc/netns/node*/hosts | cut -d/ -f4) 2>/dev/null | sort -u); do
    ip netns pids "$node" 2>/dev/null | xargs -r kill -9
    ip netns del "$node" 2>/dev/null && log "removed network namespace $node"
    rm -rf "/etc/netns/$node"
done
ip link del slurmdev-br 2>/dev/null && log "removed bridge slurmdev-br"
# munged only if start.sh started it (a real cluster's munged stays up).
[ -f "$DIR/.munged-ours" ] && stop_pidfile munged /run/munge/munged.pid
exit 0
