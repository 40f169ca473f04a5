#!/usr/bin/env python3
"""Trove's own database layer, for the local control plane of the quick start.

Everything here goes through upstream trove's models (trove==26.0.0), on the
database named by `[database] connection` of the trove.conf given (a MariaDB
database of its own per control plane; see controlplane.sh). plane.py, the
control plane of the Rust tests, imports make_instance and stored_status.

  trovedb.py --config-file trove.conf create-instance \\
          --datastore k2hdkc --version 1.0.17 --name NAME --tenant TENANT
      What trove-api and trove-taskmanager store and inject for a new
      instance, without Nova: DBInstance.create (trove makes the instance id
      and the per-instance RPC key, stored encrypted with
      inst_rpc_key_encr_key), InstanceServiceStatus NEW, then the files
      BaseInstance.get_injected_files renders for the guest (guest_info.conf
      with the key, and trove-guestagent.conf copied from guest_config),
      written under injected_config_location. Prints {"id": ..., "files":
      [...]}; never the key.
  trovedb.py --config-file trove.conf status --instance ID
      The service status the conductor stored for the instance (one JSON
      line): status, its API name, updated_at, and the `sent` time of the
      last heartbeat the conductor accepted (conductor_lastseen).
  trovedb.py --config-file trove.conf wait --instance ID --until healthy \\
          [--fail-on "failed to spawn"] [--timeout 180]
      Polls the stored status; prints each change as it is seen, then the
      final status. Exit 0 when it is --until, 1 when it is a --fail-on
      status, 2 on timeout.
"""

import argparse
import datetime
import json
import os
import sys
import time
import warnings

# oslo.service's eventlet backend warns on import that eventlet is
# deprecated; not news to the person running the quick start.
warnings.filterwarnings("ignore", message="(?s).*Eventlet is deprecated")

from trove.common import cfg as trove_cfg  # noqa: E402
from trove.common import context as trove_context  # noqa: E402
from trove.common import exception as trove_exception  # noqa: E402
from trove.conductor import models as conductor_models  # noqa: E402
from trove.datastore import models as ds_models  # noqa: E402
from trove.db import get_db_api  # noqa: E402
from trove.instance import models as inst_models  # noqa: E402
from trove.instance import service_status as srvstatus  # noqa: E402
from trove.instance import tasks as inst_tasks  # noqa: E402

CONF = trove_cfg.CONF


def emit(obj):
    print(json.dumps(obj, sort_keys=True, default=str), flush=True)


def make_instance(datastore, version_name, name, tenant,
                  flavor_id="quickstart", volume_size=1):
    """The instance rows and the files trove injects; (id, {path: text})."""
    version = ds_models.DatastoreVersion.load(
        ds_models.Datastore.load(datastore), version_name)
    # As trove.instance.models.Instance.create (the trove-api side).
    db_info = inst_models.DBInstance.create(
        name=name, flavor_id=flavor_id, tenant_id=tenant,
        volume_size=volume_size, datastore_version_id=version.id,
        task_status=inst_tasks.InstanceTasks.BUILDING)
    status = inst_models.InstanceServiceStatus.create(
        instance_id=db_info.id, status=srvstatus.ServiceStatuses.NEW)
    # As trove.taskmanager.models.FreshInstanceTasks does before it asks
    # Nova for the server: the files the guest finds in its config dir.
    context = trove_context.TroveContext(project_id=tenant, is_admin=True)
    instance = inst_models.BaseInstance(context, db_info, None, status)
    return db_info.id, instance.get_injected_files(version.manager,
                                                   version.name)


def create_instance(args):
    instance_id, files = make_instance(
        args.datastore, args.version, args.name, args.tenant,
        flavor_id=args.flavor_id, volume_size=args.volume_size)
    old_umask = os.umask(0o077)  # guest_info.conf carries the instance key
    try:
        for path, content in sorted(files.items()):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(content)
    finally:
        os.umask(old_umask)
    emit({"id": instance_id, "files": sorted(files)})
    return 0


def stored_status(instance_id):
    status = inst_models.InstanceServiceStatus.find_by(
        instance_id=instance_id)
    try:
        seen = conductor_models.LastSeen.load(instance_id=instance_id,
                                              method_name="heartbeat")
    except trove_exception.NotFound:
        seen = None
    sent = None
    if seen is not None and seen.sent is not None:
        sent = datetime.datetime.fromtimestamp(
            float(seen.sent), datetime.timezone.utc).isoformat()
    return {"instance_id": instance_id,
            "status": status.status.description,
            "api_status": status.status.api_status,
            "updated_at": status.updated_at,
            "last_heartbeat_sent": sent}


def status(args):
    emit(stored_status(args.instance))
    return 0


def wait(args):
    deadline = time.monotonic() + args.timeout
    last = None
    while True:
        now = stored_status(args.instance)
        if now["status"] != (last or {}).get("status"):
            emit({"seen": now["status"], "updated_at": now["updated_at"]})
        last = now
        if now["status"] == args.until:
            emit(now)
            return 0
        if now["status"] in args.fail_on:
            emit(now)
            return 1
        if time.monotonic() >= deadline:
            emit(dict(now, timeout=args.timeout))
            return 2
        time.sleep(args.interval)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create-instance")
    p.add_argument("--datastore", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--flavor-id", default="quickstart")
    p.add_argument("--volume-size", type=int, default=1)
    p.set_defaults(func=create_instance)
    p = sub.add_parser("status")
    p.add_argument("--instance", required=True)
    p.set_defaults(func=status)
    p = sub.add_parser("wait")
    p.add_argument("--instance", required=True)
    p.add_argument("--until", required=True)
    p.add_argument("--fail-on", action="append", default=[])
    p.add_argument("--timeout", type=float, default=180)
    p.add_argument("--interval", type=float, default=0.25)
    p.set_defaults(func=wait)
    args = parser.parse_args(argv)
    load_config(args.config_file)
    get_db_api().configure_db()
    return args.func(args)


def load_config(config_file):
    """As trove's services: oslo.config reads the file (then configure_db)."""
    CONF(["--config-file", config_file], project="trove",
         default_config_files=[])


if __name__ == "__main__":
    sys.exit(main())
