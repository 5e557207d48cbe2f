#!/usr/bin/env bash
# A one-node Slurm cluster on this machine: munged + slurmctld + slurmd, everything under one folder.
#
# Why: the Slurm executor and the sbatch training example are only proven by running them on a real
# scheduler (job arrays, dependencies, `squeue`, `scancel`, `srun` inside a job). Debian's slurm-wlm and
# munge start in seconds as root with a minimal slurm.conf, so the tests (tests/slurm_support.py) start
# a private cluster with this script, and anyone can try `--executor slurm` the same way.
#
# Usage:
#   tools/slurm-local.sh start [DIR]   install slurmctld/slurmd/slurm-client/munge when missing (root + apt),
#                                      write DIR/slurm.conf, start the three daemons, wait until `sinfo`
#                                      shows the node idle, print `export SLURM_CONF=DIR/slurm.conf` last
#                                      (DIR: default a new mktemp -d folder; eval "$(... start)" works)
#   tools/slurm-local.sh stop DIR      cancel the cluster's jobs, stop the daemons whose pid files are in
#                                      DIR (and only those), keep DIR (logs) unless --clean: stop --clean DIR
#   tools/slurm-local.sh install       only the packages (root + apt; .ci/run calls it), nothing started
#   tools/slurm-local.sh check         exit 0 when `start` can work here, else print one line why and exit 3
#
# The cluster: node `llamix` at 127.0.0.1 with this machine's CPUs (nproc) and 95% of its memory, one
# partition `llamix` (default), ProctrackType=proctrack/linuxproc, TaskPlugin=task/none (no cgroup.conf,
# so memory requests are scheduled but not enforced), SelectType=select/cons_tres with CR_CPU_Memory,
# no accounting. The ports are free ones picked at start, so a system Slurm or a second cluster does not
# collide. munged gets its own key, socket, pid, log and seed files in DIR (--key-file etc.), so nothing
# outside DIR is written by `start` except what apt-get does when it installs the packages (Debian's
# munge package creates /etc/munge/munge.key; the packages' own services are not started by this script).
set -euo pipefail

NODE=llamix
PARTITION=llamix
DEBS=(slurmctld slurmd slurm-client munge)

say() { echo "slurm-local: $*" >&2; }
die() { say "$*"; exit 1; }

missing_debs() {
    local pkg out=()
    for pkg in "${DEBS[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || out+=("$pkg")
    done
    echo "${out[*]}"
}

# One line saying why `start` cannot work here (empty when it can).
why_not() {
    if [[ "$(uname -s)" != Linux ]]; then echo "not Linux"; return; fi
    if [[ "$(id -u)" != 0 ]]; then echo "not root (slurmd must run as root to start jobs)"; return; fi
    local missing
    missing="$(command -v dpkg-query >/dev/null && missing_debs || echo unknown)"
    if [[ -n "$missing" ]] && ! command -v apt-get >/dev/null; then
        echo "Slurm packages missing and no apt-get to install them ($missing)"
    fi
}

install_packages() {
    local missing
    missing="$(missing_debs)"
    [[ -z "$missing" ]] && return 0
    say "apt-installing $missing"
    export DEBIAN_FRONTEND=noninteractive
    # The packages' maintainer scripts would start the system munge/slurmctld/slurmd services (a munged
    # left running, a slurmctld failing without /etc/slurm/slurm.conf): a policy-rc.d that says no, for
    # the length of the install, when the machine has none (Docker images usually do).
    local policy=/usr/sbin/policy-rc.d added=""
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\n# temporary, tools/slurm-local.sh: no service starts while it installs Slurm\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        added=1
    fi
    local rc=0
    { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $missing >/dev/null; } || rc=$?
    if [[ -n "$added" ]]; then rm -f "$policy"; fi
    (( rc == 0 )) || die "apt-get install $missing failed (exit $rc)"
}

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {  # a port nothing listens on, from a range away from Slurm's defaults (6817-6819)
    local p
    for _ in $(seq 200); do
        p=$(( 20000 + RANDOM % 20000 ))
        if port_is_free "$p" && [[ "$p" != "${1:-}" ]]; then echo "$p"; return; fi
    done
    die "no free port found"
}

# A pid file's process, if it is still the daemon named (pid files outlive their processes).
live_pid() {
    local file=$1 name=$2 pid
    [[ -s "$file" ]] || return 1
    pid="$(tr -dc 0-9 <"$file")"
    [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 1
    [[ "$(cat "/proc/$pid/comm")" == "$name"* ]] || return 1
    echo "$pid"
}

write_config() {
    local dir=$1 cpus mem_mb ctld_port d_port
    cpus="$(nproc)"
    mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 95 / 100 ))
    ctld_port="$(free_port)"
    d_port="$(free_port "$ctld_port")"
    : >"$dir/plugstack.conf"
    cat >"$dir/slurm.conf" <<EOF
# written by tools/slurm-local.sh: a one-node cluster for tests; everything lives in $dir
ClusterName=llamix
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
PlugStackConfig=$dir/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdTimeout=60
MinJobAge=60
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$(hostname -s) CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    local dir=${1:-}
    local why
    why="$(why_not)"
    [[ -z "$why" ]] || { say "cannot start: $why"; exit 3; }
    install_packages
    if [[ -z "$dir" ]]; then dir="$(mktemp -d -t llamix-slurm.XXXXXX)"; fi
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if live_pid "$dir/slurmctld.pid" slurmctld >/dev/null || live_pid "$dir/munged.pid" munged >/dev/null; then
        die "a cluster is already running in $dir (stop it first: $0 stop $dir)"
    fi
    mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
    chmod 700 "$dir" "$dir/munge"
    write_config "$dir"
    export SLURM_CONF="$dir/slurm.conf"
    # On any failure below: stop what was started, show the daemons' last log lines.
    trap 'say "start failed; logs in $dir"; tail -n 5 "$dir"/*.log >&2 2>/dev/null || true; stop "$dir" >/dev/null 2>&1 || true' ERR

    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/munged.seed"
    slurmctld -f "$SLURM_CONF" -i
    slurmd -f "$SLURM_CONF"

    local state=""
    for _ in $(seq 120); do
        state="$(sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null || true)"
        [[ "$state" == idle ]] && break
        sleep 0.5
    done
    if [[ "$state" != idle ]]; then
        say "node $NODE is '${state:-unknown}', not idle, after 60 s"
        false
    fi
    trap - ERR
    say "one-node cluster up in $dir ($(sinfo -h -N -o '%c CPUs, %m MB' | head -1), partition $PARTITION)"
    echo "export SLURM_CONF=$SLURM_CONF"
}

stop() {
    local dir=${1:-}
    [[ -n "$dir" && -d "$dir" ]] || die "usage: $0 stop DIR (the folder \`start\` printed)"
    dir="$(cd "$dir" && pwd)"
    export SLURM_CONF="$dir/slurm.conf"
    local pid jobs
    # Jobs first: stopping slurmd would leave their slurmstepd processes running.
    if live_pid "$dir/slurmctld.pid" slurmctld >/dev/null; then
        jobs="$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')"
        if [[ -n "${jobs// }" ]]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 60); do
                [[ -z "$(squeue -h -o %A 2>/dev/null)" ]] && break
                sleep 0.5
            done
        fi
    fi
    local daemon
    for daemon in slurmd slurmctld munged; do
        pid="$(live_pid "$dir/$daemon.pid" "$daemon")" || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 40); do
            [[ -e "/proc/$pid" ]] || break
            sleep 0.25
        done
        if [[ -e "/proc/$pid" ]]; then
            say "$daemon ($pid) did not stop on TERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    say "stopped the cluster in $dir"
}

case "${1:-}" in
    start) start "${2:-}" ;;
    stop)
        if [[ "${2:-}" == --clean ]]; then
            stop "${3:-}"
            rm -rf -- "$3"
        else
            stop "${2:-}"
        fi
        ;;
    install)  # what .ci/run calls: the packages only, nothing started
        why="$(why_not)"
        [[ -z "$why" ]] || { say "not installing: $why"; exit 3; }
        install_packages
        ;;
    check)
        why="$(why_not)"
        [[ -z "$why" ]] || { echo "$why"; exit 3; }
        ;;
    *) echo "usage: $0 start [DIR] | stop [--clean] DIR | install | check" >&2; exit 2 ;;
esac
