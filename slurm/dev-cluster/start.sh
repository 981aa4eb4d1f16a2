#!/usr/bin/env bash
# Start a SLURM cluster on this machine for development and end-to-end tests: the controller
# (slurmctld, slurmdbd, MariaDB) on the host and SLURM_DEV_NODES compute nodes (default 2: node0, node1).
# With two or more, each slurmd runs in its own network namespace and UTS namespace (hostname = node
# name), with its own address on a bridge (10.77.0.1 is the host's; node<i> is 10.77.0.<10+i>); with
# SLURM_DEV_NODES=1 one slurmd (node0) runs on the host, on loopback. Idempotent. Needs root and install.sh.
#   eval "$(slurm/dev-cluster/start.sh)"   # stdout is only: export SLURM_CONF=...
set -euo pipefail
DIR=${SLURM_DEV_DIR:-/tmp/slurm-dev}
GRACE=${SLURM_DEV_GRACE_TIME:-20}
NODES=${SLURM_DEV_NODES:-2}
NET=10.77.0   # the bridge's /24: host .1, node<i> .(10+i)
BRIDGE=slurmdev-br
export SLURM_CONF=$DIR/slurm.conf
log() { echo "slurm dev cluster: $*" >&2; }
# The daemons started here must not inherit the caller's descriptors: a `flock LOCK start.sh` would stay
# locked for as long as they run. (255: bash reads this script from it.)
for fd in /proc/$$/fd/*; do
    fd=${fd##*/}; [ "$fd" -gt 2 ] && [ "$fd" -ne 255 ] && eval "exec $fd>&-"
done
case $NODES in [1-9]) ;; *) log "SLURM_DEV_NODES=$NODES: give 1 to 9"; exit 1 ;; esac
nodes=(); for ((i = 0; i < NODES; i++)); do nodes+=("node$i"); done
node_list=node0; [ "$NODES" -gt 1 ] && node_list="node[0-$((NODES - 1))]"

# Ask slurmctld only if its process lives: a client retries a dead one for 9 s.
pid=$(cat "$DIR/slurmctld.pid" 2>/dev/null) || true
if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slurmctld ] && running=$(timeout 5 sinfo -h -N -o %N 2>/dev/null); then
    if [ "$(sort -u <<<"$running" | wc -l)" -ne "$NODES" ]; then
        log "running with other nodes ($(sort -u <<<"$running" | xargs)) than SLURM_DEV_NODES=$NODES asks for: restarting"
    elif ! timeout 10 sacct -n -X -j 1 >/dev/null 2>&1; then
        log "running, but its accounting does not answer (MariaDB or slurmdbd gone): restarting"
    else
        log "already running ($DIR, $NODES node(s))"; echo "export SLURM_CONF=$SLURM_CONF"; exit 0
    fi
fi
[ "$(id -u)" -eq 0 ] || { log "start.sh must run as root"; exit 1; }
t0=$(date +%s%N)
"$(dirname "$0")/stop.sh" 2>/dev/null   # half-started leftovers hold the ports
# A fresh state dir every start, so job ids restart at 1. Never wipe a foreign dir.
if [ -n "$(ls -A "$DIR" 2>/dev/null)" ] && [ ! -f "$DIR/.slurm-dev" ]; then
    log "$DIR is not empty and was not made by start.sh; set SLURM_DEV_DIR"; exit 1
fi
rm -rf "$DIR" && mkdir -p "$DIR"/{state,log,dev} && touch "$DIR/.slurm-dev"
for node in "${nodes[@]}"; do mkdir -p "$DIR/spool/$node"; done
# Two fake GPUs for --gres=gpu:N: slurmd only needs device files (here /dev/null's).
mknod "$DIR/dev/nvidia0" c 1 3 && mknod "$DIR/dev/nvidia1" c 1 3
echo "Name=gpu File=$DIR/dev/nvidia[0-1]" >"$DIR/gres.conf"
# Two or more nodes: a bridge with the host's address, and per node a network namespace with loopback up
# (gloo and torch use it) and a veth pair: eth0 inside, slurmdev-<node> on the bridge. Inside, the node
# names resolve through /etc/netns/<node>/hosts (bind-mounted over its /etc/hosts, as `ip netns exec` does); stop.sh
# removes all of it.
if [ "$NODES" -gt 1 ]; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    hosts=$(printf '# made by slurm/dev-cluster/start.sh\n127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n%s\n' "$NET.1 $(hostname)"
            for i in "${!nodes[@]}"; do echo "$NET.$((10 + i)) node$i"; done)
    for i in "${!nodes[@]}"; do
        node=node$i
        ip netns add "$node" && echo "$node" >>"$DIR/netns"
        ip link add "slurmdev-$node" type veth peer name eth0 netns "$node"
        ip link set "slurmdev-$node" master "$BRIDGE" up
        ip -n "$node" addr add "$NET.$((10 + i))/24" dev eth0
        ip -n "$node" link set eth0 up
        ip -n "$node" link set lo up
        mkdir -p "/etc/netns/$node" && echo "$hosts" >"/etc/netns/$node/hosts"
    done
fi
DBD_PORT=${SLURM_DEV_DBD_PORT:-6819}
DB_PORT=${SLURM_DEV_DB_PORT:-3307}   # not 3306: a machine's own MariaDB may hold that one
# Each node: twice the machine's cores by default: the tests' jobs mostly wait (paced checkpoint writes,
# sleeps, signals), and twice as many of them fit side by side (SlurmdParameters=config_overrides below);
# the same count on every node, so that a job of one task per node fits next to the one-node jobs.
cpus=${SLURM_DEV_CPUS:-$(( $(nproc) * 2 ))}
mem=$(( $(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p') * 9 / 10 / NODES ))   # the nodes share it
if [ "$NODES" -gt 1 ]; then
    # Host-independent names: works on any machine, whatever its hostname. The nodes reach the host at
    # the bridge's address; "localhost" is the name slurmctld accepts as its own.
    ctl_host="localhost($NET.1)"; dbd_host=$NET.1
    node_lines=$(for i in "${!nodes[@]}"; do
        echo "NodeName=node$i NodeAddr=$NET.$((10 + i)) NodeHostname=node$i CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN"
    done)
else
    ctl_host=localhost; dbd_host=localhost
    node_lines="NodeName=node0 NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN"
fi
cat >"$SLURM_CONF" <<EOF
ClusterName=dev
SlurmctldHost=$ctl_host
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
# Per node (%n): each slurmd has its own spool, pid file and log.
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
# Containers have no cgroup/systemd: track jobs via /proc, no binding, no resource sampling.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# Accounting as on a real cluster: slurmdbd (below) keeps every job's final state for sacct.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$dbd_host
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
# A node that does not answer for 60 s is DOWN (its jobs killed, --requeue ones requeued), and back once
# its slurmd answers again; one set DOWN by scontrol stays DOWN until `scontrol update ... state=resume`.
SlurmdTimeout=60
ReturnToService=1
# the nodes' CPUs are the ones configured here, not those slurmd counts (see cpus= above)
SlurmdParameters=config_overrides
# Preemption: a job in "urgent" requeues jobs in "debug". preempt_send_user_signal
# sends the job's --signal (e.g. B:USR2) at once; SIGTERM follows at the end of GraceTime.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
GresTypes=gpu
$node_lines
# GraceTime: time between USR2 and SIGTERM for a preempted job; enough to finish a
# step and fsync a checkpoint on a slow CI disk, short enough for quick tests.
PartitionName=debug Nodes=$node_list Default=YES PriorityTier=1 MaxTime=INFINITE GraceTime=$GRACE PreemptMode=REQUEUE State=UP
PartitionName=urgent Nodes=$node_list PriorityTier=10 MaxTime=INFINITE PreemptMode=OFF State=UP
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
# its own session, like the daemons that fork themselves: the caller's process group may be killed when it ends
setsid mariadbd --user=mysql --datadir="$db/data" --socket="$db/mysql.sock" --pid-file="$db/mysql.pid" \
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
if [ "$NODES" -gt 1 ]; then
    for node in "${nodes[@]}"; do
        # In the node's network namespace, with its own hostname (UTS namespace) and /etc/hosts (a mount
        # namespace: the bind mount of /etc/netns/<node>/hosts); its jobs' processes inherit all three. Not
        # `ip netns exec`, which mounts a /sys without the cgroup filesystem that slurmd needs.
        nsenter --net="/run/netns/$node" unshare --uts --mount --propagation slave \
            sh -c "mount --bind /etc/netns/$node/hosts /etc/hosts && hostname $node && exec slurmd -N $node" \
            || { log "slurmd $node failed; see $DIR/log/slurmd-$node.log"; exit 1; }
    done
else
    slurmd -N node0 || { log "slurmd failed; see $DIR/log/slurmd-node0.log"; exit 1; }
fi
for _ in $(seq 60); do
    if [ "$(sinfo -h -N -o %T 2>/dev/null | sort -u)" = idle ] && [ "$(sinfo -h -N -o %N | sort -u | wc -l)" -eq "$NODES" ]; then
        log "up in $((($(date +%s%N) - t0) / 1000000)) ms: $node_list, $cpus CPUs and gpu:2 each, partitions debug (GraceTime=${GRACE}s), urgent; accounting: slurmdbd + MariaDB; logs in $DIR/log"
        echo "export SLURM_CONF=$SLURM_CONF"; exit 0
    fi
    sleep 0.5
done
log "$node_list not idle after 30 s (state: $(sinfo -h -N -o '%N %T' 2>&1 | xargs)); see $DIR/log/slurmctld.log and $DIR/log/slurmd-*.log"
exit 1
