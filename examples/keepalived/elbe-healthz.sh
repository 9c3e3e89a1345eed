#!/bin/sh
# keepalived's vrrp_script: exit 0 while this machine's elbe can serve. /healthz answers 503 with the reason when
# it cannot (no InService instance its nodes may use, a listener not accepting); curl fails on that (-f) and on a
# refused connection (elbe down). The admin address is elbe.toml's [admin] listen.
exec curl -fsS --max-time 1 -o /dev/null http://127.0.0.1:9900/healthz
