#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (controller + node "node0") for
# development and end-to-end tests. Idempotent. Needs root and install.sh first.
#   eval "$(slurm/dev-cluster/start.sh)"   # stdout is only: export SLURM_CONF=...
set -euo pipefail
DIR=${SLURM_DEV_DIR:-/tmp/slurm-dev}
GRACE=${SLURM_DEV_GRACE_TIME:-20}
export SLURM_CONF=$DIR/slurm.conf
log() { echo "slurm dev cluster: $*" >&2; }

# Ask slurmctld only if its process lives: a client retries a dead one for 9 s.
pid=$(cat "$DIR/slurmctld.pid" 2>/dev/null) || true
if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slurmctld ] && timeout 5 sinfo >/dev/null 2>&1; then
    log "already running ($DIR)"; echo "export SLURM_CONF=$SLURM_CONF"; exit 0
fi
[ "$(id -u)" -eq 0 ] || { log "start.sh must run as root"; exit 1; }
t0=$(date +%s%N)
"$(dirname "$0")/stop.sh" 2>/dev/null   # half-started leftovers hold the ports
# A fresh state dir every start, so job ids restart at 1. Never wipe a foreign dir.
if [ -n "$(ls -A "$DIR" 2>/dev/null)" ] && [ ! -f "$DIR/.slurm-dev" ]; then
    log "$DIR is not empty and was not made by start.sh; set SLURM_DEV_DIR"; exit 1
fi
rm -rf "$DIR" && mkdir -p "$DIR"/{state,spool,log,dev} && touch "$DIR/.slurm-dev"
# Two fake GPUs for --gres=gpu:N: slurmd only needs device files (here /dev/null's).
mknod "$DIR/dev/nvidia0" c 1 3 && mknod "$DIR/dev/nvidia1" c 1 3
echo "Name=gpu File=$DIR/dev/nvidia[0-1]" >"$DIR/gres.conf"
DBD_PORT=${SLURM_DEV_DBD_PORT:-6819}
DB_PORT=${SLURM_DEV_DB_PORT:-3307}   # not 3306: a machine's own MariaDB may hold that one
# Twice the machine's cores by default: the tests' jobs mostly wait (paced checkpoint writes, sleeps,
# signals), and twice as many of them fit side by side (SlurmdParameters=config_overrides below).
cpus=${SLURM_DEV_CPUS:-$(( $(nproc) * 2 ))}
mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
cat >"$SLURM_CONF" <<EOF
ClusterName=dev
# Host-independent names: works on any machine, whatever its hostname.
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# Containers have no cgroup/systemd: track jobs via /proc, no binding, no resource sampling.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# Accounting as on a real cluster: slurmdbd (below) keeps every job's final state for sacct.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Fast turnaround for tests: schedule every 2 s; a requeued job waits cred_expire
# (default 120 s, 5 is the minimum) before it may run again.
SchedulerParameters=bf_interval=2,sched_interval=2
AuthInfo=cred_expire=5
# SIGTERM -> SIGKILL after 10 s; finished jobs stay visible to scontrol for 10 min.
KillWait=10
MinJobAge=600
ReturnToService=2
# node0's CPUs are the ones configured here, not those slurmd counts (see cpus= above)
SlurmdParameters=config_overrides
# Preemption: a job in "urgent" requeues jobs in "debug". preempt_send_user_signal
# sends the job's --signal (e.g. B:USR2) at once; SIGTERM follows at the end of GraceTime.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
GresTypes=gpu
NodeName=node0 NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$cpus RealMemory=$((mem * 9 / 10)) Gres=gpu:2 State=UNKNOWN
# GraceTime: time between USR2 and SIGTERM for a preempted job; enough to finish a
# step and fsync a checkpoint on a slow CI disk, short enough for quick tests.
PartitionName=debug Nodes=node0 Default=YES PriorityTier=1 MaxTime=INFINITE GraceTime=$GRACE PreemptMode=REQUEUE State=UP
PartitionName=urgent Nodes=node0 PriorityTier=10 MaxTime=INFINITE PreemptMode=OFF State=UP
EOF
# Plain `sinfo` (no SLURM_CONF) works too when this machine has no slurm.conf of its own.
if [ -L /etc/slurm/slurm.conf ] || [ ! -e /etc/slurm/slurm.conf ]; then
    mkdir -p /etc/slurm && ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
fi

if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    [ -f /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged && touch "$DIR/.munged-ours"   # stop.sh stops it
fi
# Accounting: a MariaDB of our own (data, socket, pid and log in $DIR/mysql, which its user owns; its own
# port) and slurmdbd on it, both started here.
install -d -o mysql -g mysql "$DIR/mysql"
db=$DIR/mysql
mariadb-install-db --user=mysql --datadir="$db/data" --auth-root-authentication-method=socket \
    >"$DIR/log/mysql-install.log" 2>&1 || { log "mariadb-install-db failed; see $DIR/log/mysql-install.log"; exit 1; }
mariadbd --user=mysql --datadir="$db/data" --socket="$db/mysql.sock" --pid-file="$db/mysql.pid" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --log-error="$db/error.log" >/dev/null 2>&1 &
for _ in $(seq 80); do
    mariadb -S "$db/mysql.sock" -e "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.25
done
mariadb -S "$db/mysql.sock" -e "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm-dev';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || { log "MariaDB did not start; see $db/error.log"; exit 1; }
printf '%s\n' "AuthType=auth/munge" "DbdHost=localhost" "DbdPort=$DBD_PORT" "SlurmUser=root" \
    "StorageType=accounting_storage/mysql" "StorageHost=127.0.0.1" "StoragePort=$DB_PORT" "StorageUser=slurm" \
    "StoragePass=slurm-dev" "StorageLoc=slurm_acct_db" "PidFile=$DIR/slurmdbd.pid" "LogFile=$DIR/log/slurmdbd.log" \
    >"$DIR/slurmdbd.conf"
chmod 600 "$DIR/slurmdbd.conf"   # found next to $SLURM_CONF; slurmdbd refuses a config others can read (it holds the password)
slurmdbd || { log "slurmdbd failed; see $DIR/log/slurmdbd.log"; exit 1; }
for _ in $(seq 80); do
    sacctmgr -i -n list cluster >/dev/null 2>&1 && break
    sleep 0.25
done
sacctmgr -i add cluster dev >/dev/null || { log "slurmdbd does not answer; see $DIR/log/slurmdbd.log"; exit 1; }
slurmctld || { log "slurmctld failed; see $DIR/log/slurmctld.log"; exit 1; }
slurmd -N node0 || { log "slurmd failed; see $DIR/log/slurmd.log"; exit 1; }
for _ in $(seq 60); do
    if [ "$(sinfo -h -n node0 -o %T 2>/dev/null | sort -u)" = idle ]; then
        log "up in $((($(date +%s%N) - t0) / 1000000)) ms: node0 $cpus CPUs, gpu:2, partitions debug (GraceTime=${GRACE}s), urgent; accounting: slurmdbd + MariaDB; logs in $DIR/log"
        echo "export SLURM_CONF=$SLURM_CONF"; exit 0
    fi
    sleep 0.5
done
log "node0 not idle after 30 s (state: $(sinfo -h -o %T 2>&1)); see $DIR/log/slurmctld.log and $DIR/log/slurmd.log"
exit 1
