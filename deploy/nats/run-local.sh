#!/bin/sh
# Runs the 3-node NATS cluster of deploy/nats on this machine, for a trial: all three
# nodes on 127.0.0.1, JetStream stores in a scratch directory. It runs copies of
# nats-1.conf .. nats-3.conf with only host names, listen addresses, ports and store_dir
# rewritten, so what you try is what you deploy. Stops all three on Ctrl-C / SIGTERM.
#
#   deploy/nats/run-local.sh                       # ports 4222-4224, 6222-6224, 8222-8224
#   NATS_PORT_OFFSET=20000 deploy/nats/run-local.sh  # ports 24222-24224, 26222-..., 28222-...
#
# Environment: NATS_PORT_OFFSET (default 0), NATS_LOCAL_DIR (default: a new temp dir,
# removed on exit), NATS_SERVER (default: nats-server on PATH, else /usr/sbin/nats-server),
# GATEWAY_PASSWORD / SHARDNODE_PASSWORD / SYS_PASSWORD (default: trial values, printed).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
offset=${NATS_PORT_OFFSET:-0}
server=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
[ -x "$server" ] || { echo "nats-server not found (set NATS_SERVER)" >&2; exit 1; }

if [ -n "${NATS_LOCAL_DIR:-}" ]; then dir=$NATS_LOCAL_DIR; keep=1; mkdir -p "$dir"
else dir=$(mktemp -d "${TMPDIR:-/tmp}/flash-nats.XXXXXX"); keep=0; fi

: "${GATEWAY_PASSWORD:=gwTrialOnly1}" "${SHARDNODE_PASSWORD:=snTrialOnly1}" "${SYS_PASSWORD:=sysTrialOnly1}"
export GATEWAY_PASSWORD SHARDNODE_PASSWORD SYS_PASSWORD

# One sed program: every port of the cluster shifted by the offset, peers on loopback.
prog="s|0\.0\.0\.0:|127.0.0.1:|g"
for i in 1 2 3; do
  for base in 4221 6221 8221; do
    p=$((base + i)); n=$((p + offset))
    prog="$prog;s|:$p\$|:#P#$n|;s|:$p\([ 	]\)|:#P#$n\1|"
  done
  prog="$prog;s|nats-route://nats-$i:|nats-route://127.0.0.1:|"
  prog="$prog;s|\"/var/lib/nats/nats-$i\"|\"$dir/store-$i\"|"
done
prog="$prog;s|:#P#|:|g"  # the marker keeps a shifted port from being shifted again

cp "$here/accounts.conf" "$dir/accounts.conf"
pids=""
stop() {
  trap - INT TERM EXIT
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for p in $pids; do wait "$p" 2>/dev/null || true; done
  [ "$keep" = 1 ] || rm -rf "$dir"
}
trap stop EXIT
trap 'exit 0' INT TERM

for i in 1 2 3; do
  sed "$prog" "$here/nats-$i.conf" > "$dir/nats-$i.conf"
  "$server" -c "$dir/nats-$i.conf" -l "$dir/nats-$i.log" &
  pids="$pids $!"
done

c1=$((4222 + offset)); c2=$((4223 + offset)); c3=$((4224 + offset)); m1=$((8222 + offset))
echo "NATS trial cluster: configs and logs in $dir"
echo "  FLASH_NATS_URL=nats://127.0.0.1:$c1,nats://127.0.0.1:$c2,nats://127.0.0.1:$c3"
echo "  users: gateway/$GATEWAY_PASSWORD  shardnode/$SHARDNODE_PASSWORD  sys/$SYS_PASSWORD"
echo "  routes: curl -s http://127.0.0.1:$m1/routez   JetStream: curl -s http://127.0.0.1:$m1/jsz"
echo "Ctrl-C stops all three."
wait
