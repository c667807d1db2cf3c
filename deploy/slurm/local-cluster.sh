#!/bin/bash
# A single-node Slurm cluster on this machine, without systemd: for CI and for trying the
# scripts of this folder before using a real cluster.
#
#   deploy/slurm/local-cluster.sh start DIR   # installs nothing; needs slurmctld slurmd
#                                             # slurm-client munge (Debian's 22.05 works)
#   export SLURM_CONF=DIR/slurm.conf          # what start prints
#   deploy/slurm/local-cluster.sh stop DIR
#
# Runs as root (SlurmUser=root, as CI does). munge runs as its own user; the daemons are
# stopped by their pid files.
set -euo pipefail
cmd=${1:?usage: local-cluster.sh start|stop DIR}
dir=$(mkdir -p "${2:?usage: local-cluster.sh start|stop DIR}" && cd "$2" && pwd)

stop() {
  for pid in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munged.pid"; do
    if [ -s "$pid" ]; then kill "$(cat "$pid")" 2>/dev/null || true; fi
  done
  sleep 1
  for pid in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munged.pid"; do
    if [ -s "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null; then kill -9 "$(cat "$pid")" || true; fi
    rm -f "$pid"
  done
}

start() {
  stop
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  # munge: its key, its socket folder, its own user.
  install -d -o munge -g munge -m 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    (command -v mungekey >/dev/null && mungekey --create --force) ||
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  if ! pgrep -u munge -x munged >/dev/null; then
    runuser -u munge -- munged --force
    sleep 0.5
    pgrep -u munge -x munged | head -1 > "$dir/munged.pid"
  fi
  local host node
  host=$(hostname -s)
  node=$(slurmd -C | head -1 | sed "s/NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/")
  cat > "$dir/slurm.conf" <<CONF
ClusterName=nrpm-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
DependencyParameters=kill_invalid_depend
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
$node
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -c -f "$SLURM_CONF"
  slurmd -c -f "$SLURM_CONF"
  for _ in $(seq 1 30); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "export SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 1
  done
  echo "slurm did not come up; logs in $dir/log" >&2
  sinfo >&2 || true
  return 1
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: local-cluster.sh start|stop DIR" >&2; exit 2 ;;
esac
