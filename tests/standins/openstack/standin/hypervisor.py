"""Running the HYPERVISOR command of the OpenStack STAND-IN (a server is not a
virtual machine; its life is handed to that command):

    HYPERVISOR up|reboot|down <server-id> <guest-dir>

argv list, cwd <guest-dir>, stdin closed, bounded by --hypervisor-timeout
(its process group is killed then), stdout and stderr appended to
<guest-dir>/hypervisor.log; the last stderr line is the fault message
when it fails.
"""

import os
import signal
import subprocess
import threading
import time

from . import state
from .common import log, ts


def run_hypervisor(action, server_id, gdir):
    """Run HYPERVISOR action server-id guest-dir, bounded; returns
    (exit code or None on timeout, last stderr line)."""
    os.makedirs(gdir, exist_ok=True)
    argv = [state.CFG.hypervisor, action, server_id, gdir]
    log_path = os.path.join(gdir, "hypervisor.log")
    started = time.time()
    last = [""]
    with open(log_path, "ab") as out:
        out.write(("=== %s %s %s %s\n" % (ts(), action, server_id, gdir)).encode())
        out.flush()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.PIPE, cwd=gdir, start_new_session=True)
        except OSError as e:
            msg = "cannot run the hypervisor %s: %s" % (state.CFG.hypervisor, e)
            out.write((msg + "\n").encode())
            log("hypervisor %s %s: %s" % (action, server_id, msg))
            return 127, msg

        def pump():
            for line in proc.stderr:
                out.write(line)
                out.flush()
                s = line.decode("utf-8", "replace").strip()
                if s:
                    last[0] = s

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=state.CFG.hypervisor_timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            rc = None
            last[0] = "hypervisor %s timed out after %ss" % (action, state.CFG.hypervisor_timeout)
        reader.join(timeout=5)
        out.write(("=== exit %s after %.1fs\n" % (rc, time.time() - started)).encode())
    log("hypervisor %s %s -> %s (%.1fs)" % (action, server_id, rc, time.time() - started))
    if rc not in (0, None) and not last[0]:
        last[0] = "hypervisor %s exited with %s" % (action, rc)
    return rc, last[0]
