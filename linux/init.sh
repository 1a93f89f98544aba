#!/bin/sh
# /init of nmivisor's Linux guest initramfs (static busybox).
#
# Mounts the pseudo filesystems, prints the userspace marker, then runs the
# test flow named by `nmv.test=NAME` on the kernel command line, or an
# interactive shell on the console when there is none. Every line it prints
# starts with `nmv-init:` so that the QEMU scenarios can follow it.
#
# Flows (see flow_* below): boot, nmi-backtrace, hardlockup, poweroff,
# hyp-dump, hyp-lockup, idle, heartbeat. A flow that goes wrong prints `nmv-init: FAILED: ...`; every flow
# ends with `poweroff -f`.
#
# This shell pins itself (and so every command it starts) to CPU 0: a CPU
# stuck in a lockup holds on to the tasks on its run queue, so the driver of
# a test must never be one of them. Lockups are started on other CPUs with
# `taskset -c N`.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root

# The virtual counter and its frequency as soon as userspace runs (hex,
# `CNTVCT CNTFRQ`; /bin/nmv-counter is written by xtask): the guest's time
# to userspace for `cargo xtask bench --linux`.
COUNTER=$(/bin/nmv-counter 2>/dev/null)

say() {
    echo "nmv-init: $*"
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
/bin/busybox --install -s 2>/dev/null

taskset -p 1 $$ >/dev/null 2>&1 || say "warning: cannot pin the init shell to CPU 0"

TEST=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    nmv.test=*) TEST="${arg#nmv.test=}" ;;
    esac
done

# Online CPUs (not `nproc`: it counts this shell's affinity, now CPU 0).
CPUS=$(grep -c ^processor /proc/cpuinfo)
say "userspace up ($CPUS CPUs, kernel $(uname -r), test: ${TEST:-none})"
[ -n "$COUNTER" ] && say "counter at userspace: $COUNTER"

DIRECT=/sys/kernel/debug/provoke-crash/DIRECT

# lockup CPU TYPE: an LKDTM crash type (HARDLOCKUP: spins with interrupts
# masked; SOFTLOCKUP: spins with preemption off) provoked on CPU, in the
# background (the writer never returns).
lockup() {
    if [ ! -e "$DIRECT" ]; then
        say "FAILED: $DIRECT is missing (CONFIG_LKDTM?)"
        return 1
    fi
    if [ "$1" -ge "$CPUS" ]; then
        say "FAILED: $2 on CPU $1 needs at least $(($1 + 1)) CPUs, there are $CPUS"
        return 1
    fi
    say "CPU $1 locks up now ($2)"
    taskset -c "$1" sh -c "echo $2 > $DIRECT" &
}

# wait_log SECONDS TEXT: waits until the kernel log holds TEXT.
wait_log() {
    n=0
    while [ "$n" -lt "$1" ]; do
        dmesg | grep -q "$2" && return 0
        sleep 1
        n=$((n + 1))
    done
    return 1
}

power_off() {
    say "powering off"
    poweroff -f
    sleep 5
    say "FAILED: still running after poweroff -f"
}

flow_boot() {
    cat /proc/interrupts
    missing=
    for text in "CPU stop NMIs" "CPU backtrace interrupts"; do
        grep -q "$text" /proc/interrupts || missing="$missing \"$text\""
    done
    if [ -n "$missing" ]; then
        say "FAILED: /proc/interrupts lacks$missing"
    else
        say "boot: /proc/interrupts lists the NMI IPIs"
    fi
    power_off
}

flow_nmi_backtrace() {
    lockup 3 HARDLOCKUP || return
    sleep 2
    say "sysrq-l: backtrace of all active CPUs"
    echo l > /proc/sysrq-trigger
    if wait_log 20 "NMI backtrace for cpu 3"; then
        say "nmi-backtrace: CPU 3 answered the NMI"
    else
        say "FAILED: no NMI backtrace for cpu 3"
    fi
    sleep 1
    power_off
}

flow_hardlockup() {
    thresh=$(cat /proc/sys/kernel/watchdog_thresh 2>/dev/null)
    lockup 3 HARDLOCKUP || return
    if wait_log 60 "hard LOCKUP on cpu 3"; then
        say "hardlockup: the detector reported CPU 3"
    else
        say "FAILED: no hard LOCKUP report for cpu 3 (watchdog_thresh=${thresh:-?})"
    fi
    sleep 2
    power_off
}

flow_hyp_dump() {
    # Keep every CPU busy inside the guest, so that the hypervisor's dump
    # catches each one there: CPUs 1.. spin in the kernel (LKDTM SOFTLOCKUP,
    # interrupts on), CPU 0 spins in userspace next to this shell.
    cpu=1
    while [ "$cpu" -lt "$CPUS" ]; do
        lockup "$cpu" SOFTLOCKUP || return
        cpu=$((cpu + 1))
    done
    (while :; do :; done) &
    spinner=$!
    sleep 2
    say "hyp-dump: every CPU is busy; waiting for the hypervisor's dump"
    sleep 12
    kill "$spinner"
    power_off
}

flow_hyp_lockup() {
    # CPU 3 spins in LKDTM HARDLOCKUP. With irqchip.gicv3_pseudo_nmi=0 it
    # masks interrupts with PSTATE.I, so nothing inside the guest reaches
    # it: the hypervisor's dump (console keys) or its guest lockup
    # detector must show where it is.
    lockup 3 HARDLOCKUP || return
    sleep 3
    say "hyp-lockup: CPU 3 is stuck; waiting for the hypervisor"
    sleep 8
    power_off
}

flow_idle() {
    # Nothing runs: every CPU sits in the idle loop while the hypervisor
    # dumps them (console keys).
    sleep 2
    say "idle: every CPU idles; waiting for the hypervisor's dump"
    sleep 10
}

flow_heartbeat() {
    # A line every 100 ms of guest time, with the virtual counter (hex
    # CNTVCT CNTFRQ), so a test can measure the gaps in guest time; until
    # a line "stop" arrives on the console (or 10 minutes pass).
    (
        n=0
        while [ "$n" -lt 6000 ]; do
            say "heartbeat $n $(/bin/nmv-counter)"
            n=$((n + 1))
            usleep 100000 2>/dev/null || sleep 0.1
        done
    ) &
    beater=$!
    say "heartbeat: a line every 100 ms; type stop to end"
    while read -r line; do
        [ "$line" = stop ] && break
    done
    kill "$beater"
    say "heartbeat: stopped"
    power_off
}

case "$TEST" in
"")
    say "no nmv.test= on the command line: starting a shell on the console"
    say "it runs on CPU 0; lock CPU 3 up with:"
    say "  taskset -c 3 sh -c 'echo HARDLOCKUP > $DIRECT' &"
    say "then try: echo l > /proc/sysrq-trigger; leave with: exit (powers off)"
    setsid cttyhack sh
    power_off
    ;;
boot) flow_boot ;;
nmi-backtrace) flow_nmi_backtrace ;;
hardlockup) flow_hardlockup ;;
poweroff) power_off ;;
hyp-dump) flow_hyp_dump ;;
hyp-lockup) flow_hyp_lockup ;;
idle) flow_idle ;;
heartbeat) flow_heartbeat ;;
*) say "FAILED: unknown test \"$TEST\" (boot, nmi-backtrace, hardlockup, poweroff, hyp-dump, hyp-lockup, idle, heartbeat)" ;;
esac
power_off
