#!/usr/bin/env bash
# Start MariaDB (127.0.0.1:3306) and Redis (127.0.0.1:6379) if they are not answering,
# then wait (bounded) until both accept connections.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 3306; then
  echo "starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
if ! port_open 6379; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
for _ in $(seq 1 120); do
  if port_open 3306 && port_open 6379; then exit 0; fi
  sleep 0.5
done
echo "MariaDB or Redis did not come up within 60 s" >&2
exit 1
