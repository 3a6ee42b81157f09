#!/usr/bin/env bash
# A single-node SLURM cluster on loopback, with accounting (sacct), in one directory:
#   tests/slurm/cluster.sh start DIR    # prints the exports a client needs
#   tests/slurm/cluster.sh stop DIR
# Debian's slurm-wlm, slurmdbd, munge and mariadb-server; every daemon runs as root from DIR,
# nothing is written to /etc. Used by tests/test_slurm.py.
set -euo pipefail
action=$1
dir=$(realpath -m "$2")

stop() {
    [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$dir/slurm.conf" ] && rm /etc/slurm/slurm.conf
    for pidfile in "$dir"/*.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 1
}

if [ "$action" = stop ]; then stop; exit 0; fi

mkdir -p "$dir"/{db,spool/ctld,spool/d,log,munge}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
db_port=$(free_port); dbd_port=$(free_port); ctld_port=$(free_port); d_port=$(free_port)
cpus=$(nproc); memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))

# munge: a key of our own; its socket is the one every Slurm client looks for
dd if=/dev/urandom bs=1 count=1024 of="$dir/munge/munge.key" status=none
chmod 400 "$dir/munge/munge.key"
mkdir -p /run/munge
munged --key-file="$dir/munge/munge.key" --pid-file="$dir/munge.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/seed" --num-threads=10 --force

# MariaDB for slurmdbd, on loopback
mariadb-install-db --datadir="$dir/db" --user=root --auth-root-authentication-method=normal >"$dir/log/db-install.log" 2>&1
mariadbd --datadir="$dir/db" --user=root --port="$db_port" --bind-address=127.0.0.1 --socket="$dir/db.sock" \
    --pid-file="$dir/mariadb.pid" --log-error="$dir/log/mariadb.log" --skip-grant-tables=0 &
for _ in $(seq 60); do mariadb --socket="$dir/db.sock" -uroot -e 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
mariadb --socket="$dir/db.sock" -uroot -e "create user if not exists 'slurm'@'127.0.0.1' identified by 'slurm';
    grant all on slurm_acct_db.* to 'slurm'@'127.0.0.1'; flush privileges;"

cat >"$dir/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=$dbd_port
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$dir/slurmdbd.pid
LogFile=$dir/log/slurmdbd.log
CONF
chmod 600 "$dir/slurmdbd.conf"

cat >"$dir/slurm.conf" <<CONF
ClusterName=visgoal
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbd_port
MpiDefault=none
ReturnToService=2
MinJobAge=3600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF="$dir/slurm.conf"
# Job steps (srun inside a batch job) read the default path, not $SLURM_CONF: link it, never over a real one.
mkdir -p /etc/slurm
if [ ! -e /etc/slurm/slurm.conf ]; then ln -s "$dir/slurm.conf" /etc/slurm/slurm.conf; fi
slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
for _ in $(seq 60); do sacctmgr -i list cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -i add cluster visgoal >/dev/null 2>&1 || true
slurmctld -f "$dir/slurm.conf"
slurmd -f "$dir/slurm.conf"
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -qx idle && break; sleep 0.5; done
sinfo -h -o %T | grep -qx idle || { echo "the node never became idle" >&2; tail -20 "$dir"/log/*.log >&2; exit 1; }
echo "export SLURM_CONF=$dir/slurm.conf"
