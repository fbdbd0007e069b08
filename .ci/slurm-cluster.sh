#!/usr/bin/env bash
# Starts a single-node Slurm cluster on this machine, as root, for the
# Slurm engine's CI check (.ci/run): munged, slurmctld and slurmd, one
# partition `ci` with this host's CPUs and memory as `slurmd -C` reports
# them. No accounting database (sacct then reports nothing; swapvm sweep
# --status reads the run folders and squeue). Idempotent: a cluster that
# already answers is left as it is.
#
# Installs slurm-wlm and munge from the distribution's packages if they
# are missing.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm-cluster: installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
fi

if sinfo -h -o '%T' 2>/dev/null | grep -q idle; then
  echo "slurm-cluster: already up ($(sinfo -h -o '%P %D %T' | head -1))"
  exit 0
fi

# munge: a key (the package's postinst makes one; make it if not), a
# socket folder, the daemon as the munge user.
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --force
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null

# slurm.conf: this host, as slurmd sees it.
host=$(hostname -s)
node=$(slurmd -C | head -1)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat >/etc/slurm/slurm.conf <<CONF
# Written by swapvm's .ci/slurm-cluster.sh: a single-node CI cluster.
ClusterName=swapvm-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$node
PartitionName=ci Nodes=$host Default=YES MaxTime=60 State=UP
CONF
# No cgroup.conf: slurmd 22.05 autodetects the cgroup version (it has no
# "disabled" plugin); the plugins above use no cgroups.

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for i in $(seq 150); do
  if sinfo -h -o '%T' 2>/dev/null | grep -q idle; then
    echo "slurm-cluster: up: $(sinfo -h -o '%P %D %T %c CPUs %m MiB' | head -1)"
    exit 0
  fi
  # A node an earlier run left drained or down (its state is saved in
  # StateSaveLocation) is put back in service.
  if [ "$i" = 25 ]; then
    scontrol update nodename="$host" state=resume 2>/dev/null || true
  fi
  sleep 0.2
done
echo "slurm-cluster: the node did not become idle; logs:" >&2
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
sinfo >&2 || true
exit 1
