#!/bin/sh
# PID 1 of the test guest (cargo xtask vmtest / demo).
# The host root is mounted read-only over 9p at the same paths, so host-built
# binaries and this checkout are visible as they are. Nothing is mounted over
# /tmp: a checkout or build under /tmp on the host stays visible. Scratch
# space is a tmpfs at /run (TMPDIR=/run/tmp).
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs run /run
mount -t debugfs none /sys/kernel/debug 2>/dev/null
mkdir -p /run/tmp /dev/shm && mount -t tmpfs shm /dev/shm
export TMPDIR=/run/tmp HOME=/run PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cmd=$(sed -n 's/.*vmt\.cmd=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "VMT-BEGIN $cmd"
/bin/sh "$cmd"
echo "VMT-EXIT $?"
echo o > /proc/sysrq-trigger
# Power-off is asynchronous; wait for it without touching the (9p) filesystem.
while :; do read -r _ < /dev/console 2>/dev/null || :; done
