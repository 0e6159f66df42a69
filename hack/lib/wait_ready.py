"""Waits until COUNT OAuthClients in NAMESPACE whose names start with PREFIX are Ready,
from one watch, not by listing them again and again: a list of 10,000 objects every
second costs the API server more than the controller does.

The watch starts at resourceVersion 0, so the API server first sends every object it
holds as an ADDED event, then each change: no list, and nothing missed between a list
and a watch. (`kubectl get -w -o jsonpath` would print the first list as a List of 500
items per chunk, which a per-object template cannot read.)

    wait_ready.py COUNT PREFIX NAMESPACE KUBECTL [ARGS...]
"""

import json
import subprocess
import sys

count, prefix, namespace, kubectl = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
base = f"/apis/oauth-operator.dev/v1alpha1/namespaces/{namespace}/oauthclients?watch=1&allowWatchBookmarks=true"


def ready(obj):
    # The Ready of the spec as it is now, not a status left from before a change.
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions", []))


done = set()
version = "0"


def watch_until_ready():
    """True once COUNT are Ready; False when the watch ends first. The API server ends a
    watch whose reader falls behind (this one does, on a machine whose cores the control
    plane keeps busy), so the next one resumes from the last resourceVersion seen: nothing
    missed, nothing sent twice. If that version is too old (410), from 0 again."""
    global done, version
    watch = subprocess.Popen(kubectl + ["get", "--raw", f"{base}&resourceVersion={version}"],
                             stdout=subprocess.PIPE, text=True)
    try:
        for line in watch.stdout:
            if not line.strip():
                continue
            event = json.loads(line)
            obj = event.get("object") or {}
            if event.get("type") == "ERROR":
                print(f"wait_ready: the watch answered {obj.get('message', obj)}; from the start again",
                      file=sys.stderr)
                done, version = set(), "0"
                return False
            meta = obj.get("metadata") or {}
            version = meta.get("resourceVersion", version)
            name = meta.get("name", "")
            if event.get("type") not in ("ADDED", "MODIFIED", "DELETED") or not name.startswith(prefix):
                continue
            if event["type"] != "DELETED" and ready(obj):
                done.add(name)
            else:
                done.discard(name)
            if len(done) >= count:
                return True
        print(f"wait_ready: the watch ended with {len(done)} Ready; resuming", file=sys.stderr)
        return False
    finally:
        watch.kill()


for _ in range(100):
    if watch_until_ready():
        sys.exit(0)
sys.exit(1)
