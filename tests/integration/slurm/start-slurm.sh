#!/usr/bin/env bash
# Starts a one-node Slurm cluster for the integration tests, as root, in the directory $1
# (created; everything lives there): munged with its own key and socket, slurmctld and slurmd
# on free ports, one node with this machine's CPUs and oversubscription allowed. Prints the
# SLURM_CONF path on success. Every wait is bounded. Exit 1 with the reason (and the daemons'
# log tails) when something is missing or a daemon does not come up; stop-slurm.sh $1 stops
# whatever was started.
set -euo pipefail
dir=${1:?usage: start-slurm.sh DIR}
fail() {
  echo "start-slurm: FAILED: $*" >&2
  for log in "$dir"/munged.log "$dir"/slurmctld.log "$dir"/slurmd.log; do
    [ -f "$log" ] && { echo "--- tail of $log" >&2; tail -n 20 "$log" >&2; }
  done
  exit 1
}
[ "$(id -u)" -eq 0 ] || fail "needs root (slurmd runs jobs as their users; munged as root needs --force)"
for prog in munged slurmctld slurmd srun sbatch sinfo scontrol; do
  command -v "$prog" >/dev/null 2>&1 || [ -x "/usr/sbin/$prog" ] ||
    fail "$prog is not installed: install munge and slurm-wlm (scripts/setup.sh does)"
done
export PATH=$PATH:/usr/sbin
mkdir -p "$dir"/state "$dir"/spool "$dir"/munge
chmod 700 "$dir" "$dir"/munge

# munge: a fresh key, its own socket (no system munged needed).
dd if=/dev/urandom of="$dir"/munge/munge.key bs=1024 count=1 status=none
chmod 400 "$dir"/munge/munge.key
munged --force --key-file="$dir"/munge/munge.key --socket="$dir"/munge/munge.socket \
  --pid-file="$dir"/munge/munged.pid --log-file="$dir"/munged.log \
  --seed-file="$dir"/munge/munged.seed || fail "munged did not start"

# Two free TCP ports for slurmctld and slurmd (the kernel's pick, released right away).
read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
host=$(hostname -s)
cpus=$(nproc)
cat > "$dir"/slurm.conf <<CONF
ClusterName=pstrain-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmdDebug=info
SlurmctldDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE OverSubscribe=FORCE:8 State=UP
CONF
export SLURM_CONF=$dir/slurm.conf
slurmctld -c -f "$SLURM_CONF" || fail "slurmctld did not start"
slurmd -f "$SLURM_CONF" || fail "slurmd did not start"

# Bounded wait until the node is idle (polling a state; there is no event to wait on).
for _ in $(seq 1 60); do
  state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)
  case "$state" in
    idle*|mixed*|allocated*) echo "$SLURM_CONF"; exit 0 ;;
  esac
  sleep 0.5
done
fail "the node did not become idle within 30 s (state: '${state:-none}')"
