#!/usr/bin/env python3
"""OpenStack STAND-IN for tests: NOT Nova, Cinder, Neutron or Glance.

A test double, Python 3 standard library only, that answers the subset of
the four OpenStack APIs an unmodified Trove 26.0.0 (trove-api and
trove-taskmanager, through python-novaclient, python-cinderclient v3,
python-neutronclient v2.0 and python-glanceclient v2) calls to create,
show, list, reboot and delete a database instance. Servers are not virtual
machines: a server's life is handed to an external HYPERVISOR command.
Production must never point at it.

One port, four path prefixes, each following its public API reference (the
note of each part is in its module of the package standin/ next to this
file, see standin/__init__.py):

  /compute/v2.1   Compute API v2.1 (docs.openstack.org/api-ref/compute)
  /volume/v3      Block Storage API v3 (docs.openstack.org/api-ref/
                  block-storage/v3)
  /network/v2.0   Networking API v2.0 (docs.openstack.org/api-ref/network/v2)
  /image/v2       Image API v2 (docs.openstack.org/api-ref/image/v2)

This file is the entry point: the command line, then the server.

    openstack_standin.py --host 127.0.0.1 --port 8774 --state DIR
        --hypervisor /path/to/cmd --network-cidr 10.213.0.0/24
        --network-name k2hdkc-box [--network-id UUID] [--image-id UUID]
        [--print-catalog] [--print-seeds]

--print-catalog prints the Keystone catalog entries and exits;
--print-seeds prints the seeded ids and exits. Otherwise, once listening,
one JSON line goes to stdout: url, catalog, seeds. --port 0 picks a free
port. One log line per request (method, path, status) goes to stderr;
requests no handler knows are logged with "UNHANDLED" and answered 404.
"""

import argparse
import ipaddress
import json
import os
import sys
import uuid

from standin import state
from standin.common import ID_NAMESPACE, log, stable_id
from standin.http import catalog, make_server, serve


def parse_flavor(spec):
    """NAME:VCPUS:RAM_MB:DISK_GIB[:ID]"""
    bits = spec.split(":")
    if len(bits) not in (4, 5):
        raise argparse.ArgumentTypeError("flavor must be NAME:VCPUS:RAM_MB:DISK_GIB[:ID]")
    name, vcpus, ram, disk = bits[0], int(bits[1]), int(bits[2]), int(bits[3])
    fid = bits[4] if len(bits) == 5 else name.replace(".", "-")
    return {"id": fid, "name": name, "vcpus": vcpus, "ram": ram, "disk": disk, "ephemeral": 0,
            "swap": 0, "description": None, "extra_specs": {}}


def build_config(argv=None):
    p = argparse.ArgumentParser(description="OpenStack stand-in (Nova/Cinder/Neutron/Glance subset) "
                                            "for Trove tests. NOT OpenStack.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8774, help="0 picks a free port")
    p.add_argument("--public-url", default=None,
                   help="base URL put in the catalog (default http://HOST:PORT)")
    p.add_argument("--state", default="./openstack-standin-state")
    p.add_argument("--hypervisor", default=None, help="command run as HYPERVISOR up|reboot|down ID DIR")
    p.add_argument("--hypervisor-timeout", type=float, default=120.0)
    p.add_argument("--network-cidr", default="10.213.0.0/24")
    p.add_argument("--network-name", default="k2hdkc-box")
    p.add_argument("--network-id", default=None)
    p.add_argument("--subnet-id", default=None)
    p.add_argument("--image-id", default=None)
    p.add_argument("--image-name", default="trove-k2hdkc-guest")
    p.add_argument("--image-tags", default="trove,k2hdkc")
    p.add_argument("--flavor", action="append", type=parse_flavor, default=None,
                   help="NAME:VCPUS:RAM_MB:DISK_GIB[:ID], repeatable (default k2hdkc.small "
                        "1/2048/10 id k2hdkc-small and k2hdkc.medium 2/4096/20 id k2hdkc-medium)")
    p.add_argument("--project-id", default=None,
                   help="project of resources created without one in the URL")
    p.add_argument("--user-id", default=None)
    p.add_argument("--volume-delay", type=float, default=0.5,
                   help="seconds a new volume stays 'creating' (0: available at once)")
    p.add_argument("--max-volume-gib", type=int, default=1000)
    p.add_argument("--print-catalog", action="store_true")
    p.add_argument("--print-seeds", action="store_true")
    cfg = p.parse_args(argv)
    ipaddress.ip_network(cfg.network_cidr, strict=False)
    cfg.flavor_list = cfg.flavor or [parse_flavor("k2hdkc.small:1:2048:10"),
                                     parse_flavor("k2hdkc.medium:2:4096:20")]
    cfg.network_id = cfg.network_id or stable_id("network", cfg.network_name)
    cfg.subnet_id = cfg.subnet_id or stable_id("subnet", cfg.network_name)
    cfg.router_id = stable_id("router", cfg.network_name)
    cfg.router_port_id = stable_id("router-port", cfg.network_name)
    cfg.image_id = cfg.image_id or stable_id("image", cfg.image_name)
    cfg.image_tags = [t for t in cfg.image_tags.split(",") if t]
    cfg.project_id = cfg.project_id or uuid.uuid5(ID_NAMESPACE, "project:service").hex
    cfg.user_id = cfg.user_id or uuid.uuid5(ID_NAMESPACE, "user:trove").hex
    cfg.default_sg_id = stable_id("security-group", "default:" + cfg.project_id)
    cfg.volume_type_id = stable_id("volume-type", "__DEFAULT__")
    cfg.state = os.path.abspath(cfg.state)
    return cfg

def main(argv=None):
    cfg = build_config(argv)
    state.CFG = cfg
    if cfg.print_catalog or cfg.print_seeds:
        cfg.public_url = (cfg.public_url or "http://%s:%d" % (cfg.host, cfg.port)).rstrip("/")
        print(json.dumps(catalog() if cfg.print_catalog else state.seeds(), indent=1))
        return 0
    if not cfg.hypervisor:
        sys.exit("--hypervisor is required")
    cfg.hypervisor = os.path.abspath(cfg.hypervisor) if os.sep in cfg.hypervisor else cfg.hypervisor
    os.makedirs(os.path.join(cfg.state, "guests"), exist_ok=True)
    os.makedirs(os.path.join(cfg.state, "volumes"), exist_ok=True)
    server = make_server(cfg)
    cfg.public_url = (cfg.public_url or "http://%s:%d" % (cfg.host, server.server_address[1])).rstrip("/")
    state.STORE = state.Store(cfg)
    state.STORE.save()
    print(json.dumps({"url": cfg.public_url, "catalog": catalog(), "seeds": state.seeds()}), flush=True)
    log("openstack stand-in listening on %s (state %s, hypervisor %s)" % (cfg.public_url, cfg.state,
                                                                          cfg.hypervisor))
    serve(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
