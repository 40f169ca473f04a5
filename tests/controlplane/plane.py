#!/usr/bin/env python3
"""A Trove control plane for the Rust tests (tests/src/controlplane.rs).

    .venv/bin/python tests/controlplane/plane.py --work DIR \\
        --url rabbit://guest:guest@127.0.0.1:5672/ --queue QUEUE

What tests/controlplane/controlplane.sh's cp_setup + cp_start_conductor do,
with upstream trove 26 (trove==26.0.0 in the venv):

  * a fresh MariaDB database and user, and DIR/trove.conf (cp_write_conf of
    controlplane.sh: one template for both);
  * the schema and the datastore registration: trove-manage's own code
    (trove.cmd.manage.Commands: db_sync, datastore_update,
    datastore_version_update), in this process (each trove-manage process
    would cost seconds of imports);
  * DIR/trove-guestagent.conf, the operator's guest config trove copies into
    each guest (transport_url, control_exchange = trove, conductor_queue =
    QUEUE, report_interval = 1);
  * the real `trove-conductor --config-file DIR/trove.conf` from the venv,
    with trove's default worker count (one per CPU); log DIR/conductor.log.

Then it prints {"ready": true, "queue": QUEUE, "work": DIR} and serves JSON
lines on stdin, one JSON reply line each on stdout:

  {"op": "create-instance", "name": N}
      trovedb.py create-instance (DBInstance.create, InstanceServiceStatus
      NEW, get_injected_files), but the injected files come back instead of
      being written: {"id": ID, "files": {"guest_info.conf": TEXT,
      "trove-guestagent.conf": TEXT}}. guest_info.conf holds the instance
      key: the reader keeps it to itself.
  {"op": "status", "id": ID}
      trovedb.py's stored status ({"status": "new", "api_status": ...,
      "updated_at", "last_heartbeat_sent", "instance_id"}), plus
      "conductor_running".
  {"op": "quit"} (or EOF)
      stops trove-conductor (SIGTERM to its process group, bounded, then
      SIGKILL), drops the database and user, deletes the broker queues
      named after QUEUE, replies {"ok": true, "stopped": true} (on quit)
      and exits 0.

A failing command replies {"error": "..."}; a failing start prints
{"ready": false, "error": "..."} and exits 1 (after the same clean-up).
Should this process die without its clean-up (SIGKILL from a test's
kill_on_drop), a watcher process it starts does the clean-up: it reads a
pipe from this process until EOF. Diagnostics go to stderr.
"""

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
CONTROLPLANE_SH = os.path.join(HERE, "controlplane.sh")
VENV_BIN = os.path.dirname(sys.executable)
DATASTORE = "k2hdkc"
VERSION = os.environ.get("CP_VERSION", "1.0.17")   # as controlplane.sh


def log(msg):
    print("plane.py: %s" % msg, file=sys.stderr, flush=True)


def bash_cp(function, *args, timeout=90, capture=False):
    """Runs one function of controlplane.sh (argv, no shell string)."""
    env = dict(os.environ, PEER_PYTHON=sys.executable)
    script = 'source "$0" || exit 1; "$@"'
    if capture:   # the function's variable named by the last argument
        script = ('source "$0" || exit 1; v=${!#}; '
                  '"${@:1:$#-1}" && printf "%s\\n" "${!v}"')
    return subprocess.run(
        ["bash", "-c", script, CONTROLPLANE_SH, function, *args],
        env=env, stdin=subprocess.DEVNULL, timeout=timeout, check=True,
        stdout=subprocess.PIPE if capture else sys.stderr,
        stderr=sys.stderr, text=True)


def amqp_params(url):
    u = urllib.parse.urlsplit(url)
    vhost = urllib.parse.unquote(u.path[1:]) if len(u.path) > 1 else "/"
    return dict(hostname=u.hostname or "127.0.0.1", port=u.port or 5672,
                userid=urllib.parse.unquote(u.username or "guest"),
                password=urllib.parse.unquote(u.password or "guest"),
                virtual_host=vhost, connect_timeout=5)


def queue_exists(url, name):
    import amqp.exceptions
    import kombu
    with kombu.Connection(**amqp_params(url)) as conn:
        try:
            conn.channel().queue_declare(queue=name, passive=True)
            return True
        except amqp.exceptions.NotFound:
            return False


def delete_queues(url, queue):
    """The queues oslo.messaging leaves behind for the conductor's server
    (QUEUE, QUEUE.<host>, QUEUE_fanout_<id>: none of them auto-delete):
    listed with rabbitmqctl as controlplane.sh's cp_delete_queues does,
    deleted over AMQP (quicker than a rabbitmqctl run per queue)."""
    import kombu
    names = {queue}
    try:
        listed = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "--no-table-headers", "name"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, timeout=20, check=True)
        names.update(n for n in listed.stdout.split()
                     if n.startswith((queue + ".", queue + "_fanout_")))
    except Exception as e:  # noqa: BLE001 (the topic queue at least)
        log("listing the broker's queues failed: %s" % e)
    try:
        with kombu.Connection(**amqp_params(url)) as conn:
            for name in sorted(names):
                try:
                    conn.channel().queue_delete(queue=name)
                except Exception as e:  # noqa: BLE001
                    log("deleting queue %s: %s" % (name, e))
    except Exception as e:  # noqa: BLE001
        log("deleting the queues of %s failed: %s" % (queue, e))


def stop_group(pgid, proc=None, grace=10.0):
    """SIGTERM the process group, wait at most `grace` s, then SIGKILL."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is None:
            time.sleep(0.1)
            continue
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    log("trove-conductor did not stop within %.0f s: SIGKILL" % grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def teardown(pgid, db, url, queue, proc=None):
    if pgid:
        stop_group(pgid, proc)
    if db:
        try:
            bash_cp("cp_drop_database", db, timeout=60)
        except Exception as e:  # noqa: BLE001
            log("dropping database %s failed: %s" % (db, e))
    delete_queues(url, queue)


def reap(args):
    """The watcher: clean up if the plane goes away without doing it."""
    pgid = None
    for line in sys.stdin:
        word, _, rest = line.strip().partition(" ")
        if word == "pgid":
            pgid = int(rest)
        elif word == "done":
            return 0
    log("the control plane went away; cleaning up after it")
    teardown(pgid, args.db, args.url, args.queue)
    return 0


def set_pdeathsig():
    # trove-conductor gets SIGTERM as soon as this process dies.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG


class Plane:
    def __init__(self, args, out):
        self.args = args
        self.out = out
        self.work = os.path.abspath(args.work)
        self.conf = os.path.join(self.work, "trove.conf")
        self.db = None
        self.watcher = None
        self.conductor = None

    def send(self, obj):
        self.out.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
        self.out.flush()

    def start(self):
        a = self.args
        os.makedirs(self.work, exist_ok=True)
        self.db = bash_cp("cp_write_conf", self.work, a.url, a.queue,
                          "CP_DB", capture=True).stdout.strip()
        log("database %s, %s" % (self.db, self.conf))
        self.watcher = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--reap",
             "--db", self.db, "--url", a.url, "--queue", a.queue,
             "--work", self.work],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            start_new_session=True, text=True)
        with open(os.path.join(self.work, "trove-guestagent.conf"), "w") as f:
            f.write("[DEFAULT]\ntransport_url = %s\ncontrol_exchange = trove\n"
                    "conductor_queue = %s\nreport_interval = 1\n"
                    % (a.url, a.queue))

        warnings.filterwarnings("ignore",
                                message="(?s).*Eventlet is deprecated")
        sys.path.insert(0, HERE)
        sys.dont_write_bytecode = True   # no __pycache__ in the tree
        import trovedb
        from trove.cmd import manage
        self.trovedb = trovedb
        trovedb.load_config(self.conf)
        commands = manage.Commands()
        t = time.monotonic()
        commands.db_sync()
        log("db_sync took %.1f s" % (time.monotonic() - t))

        # The conductor reflects the tables at start: after db_sync.
        logf = open(os.path.join(self.work, "conductor.log"), "ab")
        self.conductor = subprocess.Popen(
            [os.path.join(VENV_BIN, "trove-conductor"),
             "--config-file", self.conf],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=set_pdeathsig)
        logf.close()
        self.watcher.stdin.write("pgid %d\n" % self.conductor.pid)
        self.watcher.stdin.flush()

        # As controlplane.sh cp_setup (see the comment there).
        commands.datastore_update(DATASTORE, "")
        commands.datastore_version_update(
            DATASTORE, VERSION, DATASTORE, "", "", 1,
            "trove_k2hdkc.guest.Manager", "None")
        commands.datastore_update(DATASTORE, VERSION)
        trovedb.get_db_api().configure_db()

        # The conductor's queue must exist before a guest casts to it.
        deadline = time.monotonic() + a.conductor_timeout
        while not queue_exists(a.url, a.queue):
            if self.conductor.poll() is not None:
                raise RuntimeError("trove-conductor exited (%s); see %s"
                                   % (self.conductor.returncode,
                                      os.path.join(self.work,
                                                   "conductor.log")))
            if time.monotonic() > deadline:
                raise RuntimeError("trove-conductor did not declare queue "
                                   "%s within %d s" % (a.queue,
                                                       a.conductor_timeout))
            time.sleep(0.25)
        log("trove-conductor (pid %d) consumes %s"
            % (self.conductor.pid, a.queue))

    def create_instance(self, cmd):
        name = cmd["name"]
        instance_id, files = self.trovedb.make_instance(
            DATASTORE, VERSION, name, cmd.get("tenant", name))
        return {"id": instance_id,
                "files": {os.path.basename(p): text
                          for p, text in files.items()}}

    def status(self, cmd):
        s = self.trovedb.stored_status(cmd["id"])
        s["conductor_running"] = self.conductor.poll() is None
        return s

    def serve(self):
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                cmd = json.loads(line)
                op = cmd.get("op")
                if op == "quit":
                    return True
                elif op == "create-instance":
                    reply = self.create_instance(cmd)
                elif op == "status":
                    reply = self.status(cmd)
                else:
                    reply = {"error": "unknown op %r" % (op,)}
            except Exception as e:  # noqa: BLE001
                log("command %s failed: %r" % (line.strip()[:200], e))
                reply = {"error": "%s: %s" % (type(e).__name__, e)}
            self.send(reply)
        return False

    def stop(self):
        with contextlib.suppress(Exception):
            from trove.db.sqlalchemy import session
            session.get_engine().dispose()
        pgid = self.conductor.pid if self.conductor else None
        teardown(pgid, self.db, self.args.url, self.args.queue,
                 self.conductor)
        if self.watcher is not None:
            with contextlib.suppress(Exception):
                self.watcher.stdin.write("done\n")
                self.watcher.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.watcher.wait(timeout=5)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--conductor-timeout", type=int, default=75)
    p.add_argument("--reap", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.reap:
        return reap(args)

    # The replies own stdout; whatever trove, alembic or oslo print goes
    # to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plane = Plane(args, out)
    quit_asked = False
    try:
        try:
            plane.start()
        except Exception as e:  # noqa: BLE001
            log("start failed: %r" % (e,))
            plane.send({"ready": False, "error": "%s: %s"
                        % (type(e).__name__, e)})
            return 1
        plane.send({"ready": True, "queue": args.queue, "work": plane.work})
        quit_asked = plane.serve()
    finally:
        plane.stop()
    if quit_asked:
        with contextlib.suppress(BrokenPipeError):
            plane.send({"ok": True, "stopped": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
