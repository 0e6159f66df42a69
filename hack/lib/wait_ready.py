"""Waits until COUNT OAuthClients whose names start with PREFIX are Ready, from one watch
(`kubectl get -w`, which this script starts and stops), not by listing them again and
again: a list of 10,000 objects every second costs the API server more than the
controller does.

    wait_ready.py COUNT PREFIX KUBECTL [ARGS...]
"""

import subprocess
import sys

count, prefix, kubectl = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
watch = subprocess.Popen(
    kubectl
    + ["get", "oauthclients", "-w", "-o",
       'jsonpath={.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}'],
    stdout=subprocess.PIPE,
    text=True,
)
ready = set()
try:
    for line in watch.stdout:
        parts = line.split()
        if not parts or not parts[0].startswith(prefix):
            continue
        if len(parts) > 1 and parts[1] == "True":
            ready.add(parts[0])
        else:
            ready.discard(parts[0])
        if len(ready) >= count:
            sys.exit(0)
    sys.exit(1)
finally:
    watch.kill()
