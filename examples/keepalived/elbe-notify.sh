#!/bin/sh
# keepalived's notify script: called as `elbe-notify.sh TYPE NAME STATE PRIORITY` on every state change
# (STATE is MASTER, BACKUP, FAULT or STOP). It logs the change and writes the state to a file that monitoring
# can read (a node exporter's textfile collector, or the failover test).
set -eu
state_dir=/run/elbe-vrrp
mkdir -p "$state_dir"
printf '%s\n' "$3" > "$state_dir/state.tmp"
mv "$state_dir/state.tmp" "$state_dir/state"
logger -t elbe-vrrp "vrrp ${1:-?} ${2:-?} is now ${3:-?} (priority ${4:-?})" 2>/dev/null || true
