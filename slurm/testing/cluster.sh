#!/usr/bin/env bash
# A one-node Slurm on localhost for the tests: `cluster.sh up` installs slurm-wlm and munge
# (Debian, needs root) when missing and starts munged, slurmctld and slurmd; `cluster.sh down`
# stops the daemons it started, by PID. Idempotent. State, spool, logs and pid files live in
# $VSCALE_SLURM_DIR (default /tmp/vscale-slurm). Settings follow ../shared/notes: no cgroups,
# no accounting, fast scheduling and requeue.
set -euo pipefail
DIR=${VSCALE_SLURM_DIR:-/tmp/vscale-slurm}
CONF=$DIR/slurm.conf

running() { [[ -f $DIR/$1.pid ]] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  [[ $(id -u) == 0 ]] || { echo "cluster.sh: need root to install slurm-wlm and munge" >&2; exit 3; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

configure() {
  mkdir -p "$DIR"/{state,spool,log}
  local mem=$(( $(awk '/MemAvailable/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))
  cat > "$CONF" <<CONF
ClusterName=vscale-test
SlurmctldHost=localhost(127.0.0.1)
AuthType=auth/munge
AuthInfo=cred_expire=5
SlurmUser=root
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=30
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
}

up() {
  install
  configure
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.1; done
    cp /run/munge/munged.pid "$DIR/munged.pid"
  fi
  running slurmctld || SLURM_CONF=$CONF /usr/sbin/slurmctld -f "$CONF" -i
  running slurmd || SLURM_CONF=$CONF /usr/sbin/slurmd -f "$CONF" -N localhost
  for _ in $(seq 300); do  # up to a minute: slurmd registers late on a loaded machine
    [[ $(SLURM_CONF=$CONF sinfo -h -o %t 2>/dev/null) == idle ]] && { echo "SLURM_CONF=$CONF"; return; }
    sleep 0.2
  done
  echo "cluster.sh: slurm did not come up; see $DIR/log" >&2; exit 1
}

down() {
  for d in slurmd slurmctld munged; do
    if running $d; then kill "$(cat "$DIR/$d.pid")"; fi
    rm -f "$DIR/$d.pid"
  done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
