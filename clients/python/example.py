"""python3 example.py [URL] [TOKEN]: fires one job, submits one and prints its status.

With `make run`'s config (examples/flingd.conf) the email type appends to var/outbox.jsonl."""
import os
import sys

import fling

client = fling.Client(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7878",
                      sys.argv[2] if len(sys.argv) > 2 else os.environ.get("FLING_TOKEN"))

# Fire-and-forget: no reply is read; False (and last_error) only if it could not be sent.
if not client.fire("email", {"to": "ann@example.com", "template": "welcome"}):
    print("not sent:", client.last_error, file=sys.stderr)

# Acknowledged: the id once the job is committed, or FlingError with the daemon's code.
try:
    job_id = client.submit("email", {"to": "bob@example.com"}, priority=5, key="welcome-bob")
    print("job", job_id, "is", client.status(job_id)["state"])
except fling.FlingError as e:
    sys.exit("refused: %s (%d): %s" % (e.code, e.status, e.message))
