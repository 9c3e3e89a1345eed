#!/usr/bin/env python3
"""elbe's scale-out hook: an Alertmanager webhook receiver that registers a new instance with elbe.

    scale-out-hook.py --admin http://127.0.0.1:9900 --provision './launch-instance.sh' [--listen 127.0.0.1:9901]

Alertmanager (alertmanager.yml beside this file) sends it the alerts labelled scale_out="true" from
elbe-alerts.yml: ElbeSurgeQueueNearlyFull (ELB's SurgeQueueLength) and ElbeSpillover (SpilloverCount). For each
firing alert that names a load_balancer and an availability_zone, the hook runs the provision command with
LOAD_BALANCER and ZONE in its environment. That command starts an instance however you start them (a VM, a
container, a process) and prints one line, "<instance_id> <address>", address being "ip", "ip:port" or
"host:port". The hook then registers it with elbe's admin API, as ELB's RegisterInstancesWithLoadBalancer did:

    POST <admin>/load_balancers/<load_balancer>/instances
    {"instance_id": "...", "zone": "...", "address": "..."}

elbe health-checks the new instance like any other: OutOfService ("Instance registration is still in
progress.") until it passes, then InService. An alert is acted on once per firing (Alertmanager repeats its
notifications); a provision or registration that fails answers 5xx, so Alertmanager retries it.

Standard library only: it runs wherever python3 does.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Refused(Exception):
    """A provision or registration that failed; the webhook answers 502 and Alertmanager retries."""


def provision(command, load_balancer, zone, timeout):
    """Runs the provision command; returns (instance_id, address) from the line it prints."""
    env = dict(os.environ, LOAD_BALANCER=load_balancer, ZONE=zone)
    try:
        done = subprocess.run(shlex.split(command), env=env, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Refused(f"provision command {command!r}: {error}") from error
    if done.returncode != 0:
        raise Refused(f"provision command exited {done.returncode}: {done.stderr.strip()}")
    words = done.stdout.split()
    if len(words) != 2:
        raise Refused(f"provision command printed {done.stdout!r}, not '<instance_id> <address>'")
    return words[0], words[1]


def register(admin, load_balancer, instance_id, zone, address, timeout):
    """POST /load_balancers/<lb>/instances; raises Refused with elbe's message when it says no."""
    url = f"{admin.rstrip('/')}/load_balancers/{urllib.request.quote(load_balancer, safe='')}/instances"
    body = json.dumps({"instance_id": instance_id, "zone": zone, "address": address}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise Refused(f"elbe refused {instance_id}: {error.code} {error.read().decode(errors='replace')}") from error
    except urllib.error.URLError as error:
        raise Refused(f"cannot reach elbe's admin API at {admin}: {error.reason}") from error


class Hook:
    """The alerts already acted on (by fingerprint and start time), so a repeated notification adds nothing."""

    def __init__(self, options):
        self.options = options
        self.handled = set()
        self.lock = threading.Lock()

    def receive(self, payload):
        """Acts on one Alertmanager webhook payload; returns what was done, alert by alert."""
        done = []
        for alert in payload.get("alerts", []):
            labels = alert.get("labels", {})
            load_balancer, zone = labels.get("load_balancer"), labels.get("availability_zone")
            key = (alert.get("fingerprint") or json.dumps(labels, sort_keys=True), alert.get("startsAt"))
            if alert.get("status") != "firing" or not load_balancer or not zone:
                done.append({"alert": labels.get("alertname"), "skipped": "not firing, or no load_balancer/zone"})
                continue
            with self.lock:
                if key in self.handled:
                    done.append({"alert": labels.get("alertname"), "skipped": "already scaled out for this alert"})
                    continue
                instance_id, address = provision(self.options.provision, load_balancer, zone, self.options.timeout)
                register(self.options.admin, load_balancer, instance_id, zone, address, self.options.timeout)
                self.handled.add(key)
            log(f"registered {instance_id} ({address}) with {load_balancer} in {zone} for {labels.get('alertname')}")
            done.append({"alert": labels.get("alertname"), "registered": instance_id, "address": address})
        return done


def log(message):
    print(f"scale-out-hook: {message}", file=sys.stderr, flush=True)


def handler(hook):
    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length) or b"{}")
                self.answer(200, {"actions": hook.receive(payload)})
            except (ValueError, AttributeError) as error:
                self.answer(400, {"error": f"not an Alertmanager webhook payload: {error}"})
            except Refused as error:
                log(str(error))
                self.answer(502, {"error": str(error)})

        def answer(self, status, document):
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass

    return Webhook


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin", default="http://127.0.0.1:9900", help="elbe's admin listener (default: %(default)s)")
    parser.add_argument("--provision", required=True, help="command that starts an instance and prints '<id> <address>'")
    parser.add_argument("--listen", default="127.0.0.1:9901", help="where Alertmanager posts (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the provision command and elbe")
    options = parser.parse_args()
    host, _, port = options.listen.rpartition(":")
    server = ThreadingHTTPServer((host.strip("[]"), int(port)), handler(Hook(options)))
    # The bound address on standard output, so a caller that asked for port 0 knows where to post.
    print(f"listening on {server.server_address[0]}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
