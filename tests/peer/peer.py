#!/usr/bin/env python3
"""Test peer that plays the Trove control plane against a guest agent.

Uses the real upstream trove / oslo.messaging code (see requirements.txt):

  peer.py client    --url URL --guest-id ID [--key KEY] [--exchange trove]
      JSON commands on stdin, exactly one JSON reply line per command on
      stdout. Calls go through trove.guestagent.api.API, as taskmanager does.
  peer.py conductor --url URL --guest-id ID --key KEY [--queue trove-conductor]
      RPC server on the conductor topic with trove's ConductorHostSerializer;
      prints {"ready":true}, then one JSON line per received message.

stdout carries JSON only; all logging and warnings go to stderr.
"""

import argparse
import inspect
import json
import logging
import signal
import sys
import threading
import time

# Anything printed by a library must not corrupt the JSON protocol, so keep
# the real stdout privately and point sys.stdout at stderr.
_OUT = sys.stdout
sys.stdout = sys.stderr
_OUT_LOCK = threading.Lock()

import oslo_messaging as messaging  # noqa: E402
import oslo_messaging.opts  # noqa: E402

from trove.common import cfg as trove_cfg  # noqa: E402  (registers options)
from trove.common import context as trove_context  # noqa: E402
from trove.common import exception as trove_exception  # noqa: E402
from trove.guestagent import api as guest_api  # noqa: E402
from trove import rpc as trove_rpc  # noqa: E402

CONF = trove_cfg.CONF
LOG = logging.getLogger("peer")


def emit(obj):
    with _OUT_LOCK:
        _OUT.write(json.dumps(obj, default=str, sort_keys=True) + "\n")
        _OUT.flush()


class _ThreadingMessaging(object):
    """Stand-in for the `messaging` module inside trove.rpc.

    trove.rpc.get_server hard-codes executor="eventlet" (trove services are
    monkeypatched). In this plain-threads process that executor hangs in
    server.wait() once it has consumed a message, so force "threading" and
    otherwise keep trove.rpc.get_server's serializer/access-policy wiring.
    """

    def __getattr__(self, name):
        return getattr(messaging, name)

    @staticmethod
    def get_rpc_server(*args, **kwargs):
        kwargs["executor"] = "threading"
        return messaging.get_rpc_server(*args, **kwargs)


def setup(args):
    # force: some imported library already attached a root handler.
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        force=True,
                        format="%(asctime)s %(levelname)s %(name)s: "
                               "%(message)s")
    trove_rpc.set_defaults(control_exchange=args.exchange)
    # oslo.messaging registers its options lazily; register them now so the
    # overrides below (and --set) can be applied before the transport exists.
    for group, opts in oslo_messaging.opts.list_opts():
        CONF.register_opts(opts, group=group)
    # No argv, no config files: everything comes from our own flags.
    CONF([], project="trove", default_config_files=[], default_config_dirs=[])
    CONF.set_override("transport_url", args.url)
    CONF.set_override("control_exchange", args.exchange)
    CONF.set_override("conductor_queue", args.queue)
    CONF.set_override("guest_id", args.guest_id)
    for item in args.set:
        name, _, value = item.partition("=")
        group, _, opt = name.rpartition(".")
        CONF.set_override(opt, value, group=group or None)
    trove_rpc.init(CONF)
    trove_rpc.messaging = _ThreadingMessaging()


def strip_remote(name):
    return name[:-len("_Remote")] if name.endswith("_Remote") else name


def error_reply(e):
    original = None
    if isinstance(e, messaging.RemoteError):
        original = e.exc_type
    elif isinstance(e, trove_exception.GuestError):
        # API._call raises GuestError inside its except block, so the
        # exception it swallowed is still reachable as __context__. (Remote
        # builtins such as ValueError come back without the _Remote suffix.)
        inner = e.__context__
        if isinstance(inner, messaging.RemoteError):
            original = inner.exc_type
        elif inner is not None:
            original = strip_remote(type(inner).__name__)
    return {"ok": False, "class": strip_remote(type(e).__name__),
            "module": strip_remote(type(e).__module__),
            "message": str(e), "original_class": original}


# ----------------------------------------------------------------- client --

def make_guest_api(context, guest_id, key):
    class PeerGuestAPI(guest_api.API):
        """Trove's guest API with the instance key taken from --key."""

        direct = False  # True: let remote exceptions through unwrapped

        def get_client(self, target, version_cap, serializer=None):
            return trove_rpc.get_client(target, key=key,
                                        version_cap=version_cap,
                                        serializer=serializer)

        def _create_guest_queue(self):
            # Same target and start/stop as upstream, minus the DB lookup.
            target = messaging.Target(topic=self._get_routing_key(),
                                      server=self.id,
                                      version=self.API_BASE_VERSION)
            server = trove_rpc.get_server(target, [], key=key)
            try:
                server.start()
            finally:
                server.stop()
                server.wait()

        def _call(self, method_name, timeout_sec, version, **kwargs):
            if not self.direct:
                return super()._call(method_name, timeout_sec, version,
                                     **kwargs)
            cctxt = self.client.prepare(version=version, timeout=timeout_sec)
            return cctxt.call(self.context, method_name, **kwargs)

        def _cast(self, method_name, version, **kwargs):
            if not self.direct:
                return super()._cast(method_name, version, **kwargs)
            self.client.prepare(version=version).cast(
                self.context, method_name, **kwargs)

        def set_timeout(self, timeout):
            self.agent_low_timeout = timeout or CONF.agent_call_low_timeout
            self.agent_high_timeout = timeout or CONF.agent_call_high_timeout
            self.agent_snapshot_timeout = (
                timeout or CONF.agent_replication_snapshot_timeout)

    return PeerGuestAPI(context, guest_id)


def api_method(api, name):
    if (name.startswith("_") or name == "get_client"
            or not callable(getattr(guest_api.API, name, None))):
        raise AttributeError("trove.guestagent.api.API has no method %r; "
                             "use \"raw\": true" % name)
    return getattr(api, name)


def do_rpc(api, cmd, kind):
    method, kwargs = cmd["method"], cmd.get("kwargs") or {}
    api.set_timeout(cmd.get("timeout"))
    api.direct = bool(cmd.get("direct"))
    if cmd.get("raw"):
        # Any wire method through the API's own _call/_cast (and client), so
        # "direct" decides about GuestError wrapping exactly as for API calls.
        version = cmd.get("version", api.API_BASE_VERSION)
        if kind == "call":
            return api._call(method, api.agent_low_timeout, version, **kwargs)
        return api._cast(method, version, **kwargs)
    return api_method(api, method)(**kwargs)


def percentile_ms(values, pct):
    # values sorted, in seconds; nearest-rank percentile.
    if not values:
        return None
    return round(values[round(pct / 100.0 * (len(values) - 1))] * 1e3, 3)


def do_bench(api, cmd):
    # One RPCClient shared by plain threads: oslo.messaging's rabbit driver
    # uses a locked connection pool and one reply-waiter thread per process.
    call = api_method(api, cmd.get("method", "rpc_ping"))
    kwargs = cmd.get("kwargs") or {}
    api.set_timeout(cmd.get("timeout"))
    api.direct = False
    seconds = float(cmd.get("seconds", 5))
    lock, latencies, errors = threading.Lock(), [], [0]
    deadline = time.monotonic() + seconds

    def worker():
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                call(**kwargs)
            except Exception:
                with lock:
                    errors[0] += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - start)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True)
               for _ in range(int(cmd.get("concurrency", 8)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return {"ok": True, "calls": len(latencies), "errors": errors[0],
            "p50_ms": percentile_ms(latencies, 50),
            "p99_ms": percentile_ms(latencies, 99),
            "per_second": round(len(latencies) / elapsed, 2)}


def run_client(args):
    context = trove_context.TroveContext(user_id="peer-user",
                                         project_id="peer-tenant")
    api = make_guest_api(context, args.guest_id, args.key)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            cmd = json.loads(line)
            op = cmd.get("op")
            if op == "quit":
                break
            # The caller's Keystone token, as trove-api's context carries
            # it to the guest (backups reach Swift with it).
            context.auth_token = cmd.get("auth_token")
            if op == "call":
                reply = {"ok": True, "result": do_rpc(api, cmd, "call")}
            elif op == "cast":
                do_rpc(api, cmd, "cast")
                reply = {"ok": True}
            elif op == "create_guest_queue":
                api._create_guest_queue()
                reply = {"ok": True, "queue": api._get_routing_key()}
            elif op == "bench":
                reply = do_bench(api, cmd)
            else:
                raise ValueError("unknown op %r" % op)
        except Exception as e:
            LOG.debug("command failed", exc_info=True)
            reply = error_reply(e)
        emit(reply)
    return 0


# -------------------------------------------------------------- conductor --

def run_conductor(args):
    from trove.common.rpc import conductor_host_serializer as chs
    from trove.common.rpc import version as rpc_version
    from trove.conductor import api as conductor_api
    from trove.conductor import manager as conductor_manager

    def get_instance_encryption_key(instance_id):
        # Replaces trove's DB lookup of the instance key.
        if instance_id != args.guest_id:
            raise trove_exception.NotFound(
                "peer conductor has no key for instance %s" % instance_id)
        return args.key

    chs.get_instance_encryption_key = get_instance_encryption_key
    local = threading.local()

    class RecordingHostSerializer(chs.ConductorHostSerializer):
        # The dispatcher deserializes the context and calls the endpoint in
        # the same worker thread, so a thread-local hands the keys over.
        def _deserialize_context(self, ctxt):
            ctxt = super()._deserialize_context(ctxt)
            local.context_keys = sorted(ctxt)
            return ctxt

    def record(method, context, kwargs):
        # Accept anything, but report when upstream's Manager would have
        # rejected the arguments (it would raise TypeError in dispatch).
        try:
            inspect.signature(getattr(conductor_manager.Manager, method)) \
                .bind(None, context, **kwargs)
            sig_error = None
        except TypeError as e:
            sig_error = str(e)
        emit({"method": method, "kwargs": kwargs,
              "context_keys": getattr(local, "context_keys", None),
              "signature_error": sig_error})

    class PeerConductor(object):
        target = messaging.Target(version=rpc_version.RPC_API_VERSION)

        def heartbeat(self, context, **kwargs):
            record("heartbeat", context, kwargs)

        def update_backup(self, context, **kwargs):
            record("update_backup", context, kwargs)

        def report_root(self, context, **kwargs):
            record("report_root", context, kwargs)

        def notify_end(self, context, **kwargs):
            record("notify_end", context, kwargs)

        def notify_exc_info(self, context, **kwargs):
            record("notify_exc_info", context, kwargs)

    # Real trove-conductor handles messages concurrently and relies on "sent"
    # to drop stale ones; one worker keeps the printed lines in arrival order
    # for tests (override with --set executor_thread_pool_size=N).
    if not any(s.startswith("executor_thread_pool_size=") for s in args.set):
        CONF.set_override("executor_thread_pool_size", 1)
    # As trove.common.rpc.service.RpcService.start() for trove-conductor.
    target = messaging.Target(topic=args.queue, server=args.server,
                              version=conductor_api.API.API_LATEST_VERSION)
    server = trove_rpc.get_server(target, [PeerConductor()], key=None,
                                  secure_serializer=RecordingHostSerializer)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    emit({"ready": True})
    while not stop.wait(0.5):
        pass
    server.stop()
    server.wait()
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("client", "conductor"))
    parser.add_argument("--url", required=True, help="oslo transport URL")
    parser.add_argument("--guest-id", required=True)
    parser.add_argument("--key", default=None,
                        help="instance RPC encryption key (none: plaintext)")
    parser.add_argument("--exchange", default="trove",
                        help="control_exchange")
    parser.add_argument("--queue", default="trove-conductor",
                        help="conductor_queue (conductor mode topic)")
    parser.add_argument("--server", default="peer-conductor",
                        help="conductor RPC server name")
    parser.add_argument("--set", action="append", default=[],
                        metavar="[GROUP.]OPT=VALUE",
                        help="extra oslo.config override, e.g. "
                             "oslo_messaging_rabbit.amqp_durable_queues=true")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    if args.mode == "conductor" and not args.key:
        parser.error("conductor mode needs --key")
    setup(args)
    try:
        if args.mode == "client":
            return run_client(args)
        return run_conductor(args)
    finally:
        try:
            trove_rpc.cleanup()
        except Exception:
            LOG.debug("rpc cleanup failed", exc_info=True)


if __name__ == "__main__":
    sys.exit(main())
