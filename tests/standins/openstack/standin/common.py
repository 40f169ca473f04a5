"""Small helpers every part of the OpenStack STAND-IN uses: deterministic ids,
OpenStack-style timestamps, the stderr log.
"""

import sys
import time
import uuid

ID_NAMESPACE = uuid.UUID("6f2b8f1e-3c1a-5d4e-9a7b-0c2d4e6f8a10")


def stable_id(kind, name):
    """Deterministic UUID for a seeded resource."""
    return str(uuid.uuid5(ID_NAMESPACE, "%s:%s" % (kind, name)))


def ts(fmt="z"):
    t = time.time()
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    if fmt == "cinder":
        return "%s.%06d" % (base, int((t % 1) * 1e6))
    return base + "Z"


def log(msg):
    sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()
