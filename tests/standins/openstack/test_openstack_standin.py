"""Tests of the OpenStack stand-in (openstack_standin.py, standin/), driven through
the client libraries and Trove 26 code paths trove-api/trove-taskmanager
use: Trove's own admin client factories (trove.common.clients_admin, the
default remote_*_client) on a keystoneauth session whose catalog holds the
stand-in's endpoints, and Trove's helpers (trove.common.neutron,
trove.common.glance, BaseInstance.prepare_cloud_config /
combine_cloudinit_userdata) with the arguments Trove passes.

Run: /work/main/.venv/bin/python -m pytest tests/standins/openstack -q
"""

import datetime
import json
import os
import stat
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request
import uuid

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from standin.cloudinit import cloud_config_files  # noqa: E402
from standin.yaml_subset import yaml_load  # noqa: E402

from keystoneauth1 import access  # noqa: E402
from keystoneauth1 import session as ka_session  # noqa: E402
from keystoneauth1.identity.access import AccessInfoPlugin  # noqa: E402

from trove.common import cfg  # noqa: E402
from trove.common import clients  # noqa: E402
from trove.common import clients_admin  # noqa: E402
from trove.common import exception as trove_exc  # noqa: E402
from trove.common import glance as trove_glance  # noqa: E402
from trove.common import neutron as trove_neutron  # noqa: E402
from trove.common.context import TroveContext  # noqa: E402
from trove.instance import models as inst_models  # noqa: E402

from cinderclient import exceptions as cinder_exc  # noqa: E402
from neutronclient.common import exceptions as neutron_exc  # noqa: E402
from novaclient import client as nova_client_mod  # noqa: E402
from novaclient import exceptions as nova_exc  # noqa: E402

CONF = cfg.CONF
TOKEN = "standin-test-token"
PROJECT = uuid.uuid4().hex


def wait_for(fn, timeout=10.0, step=0.05, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


def v3_token(catalog):
    """The body of a Keystone v3 token response (identity API v3)."""
    domain = {"id": "default", "name": "Default"}
    return {"token": {
        "methods": ["password"], "issued_at": "2024-01-01T00:00:00.000000Z",
        "expires_at": "2999-01-01T00:00:00.000000Z",
        "user": {"id": uuid.uuid4().hex, "name": "trove", "domain": domain},
        "project": {"id": PROJECT, "name": "service", "domain": domain},
        "roles": [{"id": uuid.uuid4().hex, "name": "admin"}],
        "catalog": [{"type": e["type"], "name": e["name"], "id": uuid.uuid4().hex, "endpoints": [
            {"id": uuid.uuid4().hex, "interface": "public", "region": "RegionOne",
             "region_id": "RegionOne", "url": e["url"]}]} for e in catalog]}}


def start_standin(state, extra=(), volume_delay="0.2"):
    err = open(os.path.join(state, "standin.stderr"), "w")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "openstack_standin.py"), "--host", "127.0.0.1",
         "--port", "0", "--state", state, "--hypervisor", os.path.join(HERE, "fake-hypervisor"),
         "--network-cidr", "10.213.0.0/24", "--network-name", "k2hdkc-box",
         "--volume-delay", volume_delay, "--hypervisor-timeout", "20"] + list(extra),
        stdout=subprocess.PIPE, stderr=err, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError("stand-in did not start: %s" % open(err.name).read())
    return proc, json.loads(line), err.name


def stop_standin(proc):
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    state = str(tmp_path_factory.mktemp("standin"))
    # volumes are available at once here (Trove polls them every 2 s); the
    # restart test below sees 'creating' first
    proc, ready, err_path = start_standin(state, volume_delay="0")
    # A keystone v3 token whose catalog holds the stand-in, as Keystone would
    # return it for Trove's service user (the lead registers the same URLs).
    auth_ref = access.create(body=v3_token(ready["catalog"]), auth_token=TOKEN)
    sess = ka_session.Session(auth=AccessInfoPlugin(auth_ref, auth_url="http://keystone.invalid/v3"))
    # Trove's admin clients (the default remote_*_client) use this session.
    clients_admin._SESSION = sess
    clients_admin.ADMIN_NOVA_CLIENT = None
    clients_admin.ADMIN_CINDER_CLIENT = None
    clients_admin.ADMIN_NEUTRON_CLIENT = None
    ctx = TroveContext(user_id="trove", project_id=PROJECT, auth_token=TOKEN,
                       service_catalog=[{"type": e["type"], "name": e["name"], "endpoints": [
                           {"region": "RegionOne", "publicURL": e["url"]}]} for e in ready["catalog"]])
    e = type("Env", (), {})()
    e.proc, e.url, e.seeds, e.catalog, e.state, e.err_path = (
        proc, ready["url"], ready["seeds"], ready["catalog"], state, err_path)
    e.session, e.ctx = sess, ctx
    e.nova = clients.create_nova_client(ctx)
    e.cinder = clients.create_cinder_client(ctx)
    e.neutron = clients.create_neutron_client(ctx)
    e.glance = clients.create_glance_client(ctx)
    yield e
    stop_standin(proc)
    clients_admin._SESSION = None
    clients_admin.ADMIN_NOVA_CLIENT = None
    clients_admin.ADMIN_CINDER_CLIENT = None
    clients_admin.ADMIN_NEUTRON_CLIENT = None


def raw(env, method, path, token=True, body=None, headers=None):
    h = dict(headers or {})
    if token:
        h["X-Auth-Token"] = TOKEN
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(env.url + path, method=method, headers=h, data=data)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def hypervisor_calls(env):
    path = os.path.join(env.state, "fake-hypervisor.calls")
    if not os.path.exists(path):
        return []
    return [line.split()[1:3] for line in open(path).read().splitlines()]


# --------------------------------------------------------------------------

def test_print_catalog_and_seeds():
    out = subprocess.run([sys.executable, os.path.join(HERE, "openstack_standin.py"), "--host", "10.0.0.5",
                          "--port", "8774", "--print-catalog"], capture_output=True, text=True, check=True)
    cat = json.loads(out.stdout)
    assert cat == [
        {"type": "compute", "name": "nova", "url": "http://10.0.0.5:8774/compute/v2.1"},
        {"type": "volumev3", "name": "cinderv3", "url": "http://10.0.0.5:8774/volume/v3"},
        {"type": "network", "name": "neutron", "url": "http://10.0.0.5:8774/network"},
        {"type": "image", "name": "glance", "url": "http://10.0.0.5:8774/image"}]
    nid = str(uuid.uuid4())
    out = subprocess.run([sys.executable, os.path.join(HERE, "openstack_standin.py"), "--network-id", nid,
                          "--print-seeds"], capture_output=True, text=True, check=True)
    seeds = json.loads(out.stdout)
    assert seeds["network"] == {"id": nid, "name": "k2hdkc-box"}
    assert [f["id"] for f in seeds["flavors"]] == ["k2hdkc-small", "k2hdkc-medium"]
    # deterministic defaults
    again = json.loads(subprocess.run([sys.executable, os.path.join(HERE, "openstack_standin.py"),
                                       "--print-seeds"], capture_output=True, text=True).stdout)
    assert again["image"]["id"] == seeds["image"]["id"]


def test_requests_without_token_are_refused(env):
    for path in ("/compute/v2.1/flavors", "/volume/v3/volumes", "/network/v2.0/networks",
                 "/image/v2/images", "/compute/v2.1/servers/detail"):
        status, body = raw(env, "GET", path, token=False)
        assert status == 401, path
        assert body["error"]["code"] == 401
        assert raw(env, "GET", path)[0] == 200, path
    # version discovery is unauthenticated, as on the real services
    assert raw(env, "GET", "/compute/v2.1", token=False)[1]["version"]["id"] == "v2.1"
    assert raw(env, "GET", "/network/", token=False)[1]["versions"][0]["id"] == "v2.0"


def test_keystoneauth_version_discovery(env):
    s = env.session
    assert s.get_endpoint(service_type="compute", interface="public",
                          min_version="2.1") == env.url + "/compute/v2.1/"
    data = s.get_endpoint_data(service_type="compute", interface="public", min_version="2.1")
    assert data.max_microversion == (2, 96)
    assert s.get_endpoint(service_type="volumev3", interface="public",
                          min_version="3").rstrip("/") == env.url + "/volume/v3"
    assert s.get_endpoint(service_type="network", interface="public",
                          min_version="2.0").rstrip("/") == env.url + "/network/v2.0"
    assert s.get_endpoint(service_type="image", interface="public",
                          min_version="2").rstrip("/") == env.url + "/image/v2"


def test_flavors(env):
    flavors = {f.name: f for f in env.nova.flavors.list()}
    assert set(flavors) == {"k2hdkc.small", "k2hdkc.medium"}
    small = env.nova.flavors.get("k2hdkc-small")
    assert (small.id, small.name, small.vcpus, small.ram, small.disk, small.ephemeral) == \
        ("k2hdkc-small", "k2hdkc.small", 1, 2048, 10, 0)
    assert env.nova.flavors.get("k2hdkc-medium").ram == 4096
    assert small.get_keys() == {}
    with pytest.raises(nova_exc.NotFound):
        env.nova.flavors.get("k2hdkc.small")    # a name is not an id
    # microversion is echoed; out of range is refused as Nova does
    status, _ = raw(env, "GET", "/compute/v2.1/flavors", headers={"X-OpenStack-Nova-API-Version": "2.200"})
    assert status == 406


def test_image_by_tags_and_id(env):
    image_id = env.seeds["image"]["id"]
    assert trove_glance.get_image_id(env.glance, None, "trove,k2hdkc") == image_id
    assert trove_glance.get_image_id(env.glance, None, ["k2hdkc"]) == image_id
    with pytest.raises(trove_exc.ImageNotFoundByTags):
        trove_glance.get_image_id(env.glance, None, ["trove", "mysql"])
    assert trove_glance.get_image_id(env.glance, image_id, None) == image_id
    with pytest.raises(trove_exc.ImageNotFound):
        trove_glance.get_image_id(env.glance, str(uuid.uuid4()), None)
    img = env.glance.images.get(image_id)
    assert img["name"] == "trove-k2hdkc-guest" and img["status"] == "active"
    assert sorted(img["tags"]) == ["k2hdkc", "trove"]


def test_network_show_and_management_network_lookup(env):
    net_id = env.seeds["network"]["id"]
    net = env.neutron.show_network(net_id)["network"]
    assert net["name"] == "k2hdkc-box" and net["subnets"] == [env.seeds["subnet"]["id"]]
    assert [n["id"] for n in env.neutron.list_networks(name="k2hdkc-box")["networks"]] == [net_id]
    assert env.neutron.list_networks(**{"router:external": True})["networks"] == []
    with pytest.raises(neutron_exc.NotFound):
        env.neutron.show_network(str(uuid.uuid4()))
    assert trove_neutron.get_subnet_cidrs(env.neutron, network_id=net_id) == ["10.213.0.0/24"]
    sub = env.neutron.show_subnet(env.seeds["subnet"]["id"])["subnet"]
    assert sub["gateway_ip"] == "10.213.0.1" and sub["allocation_pools"][0]["start"] == "10.213.0.10"
    CONF.set_override("management_networks", [net_id])
    try:
        trove_neutron.reset_management_networks()
        assert trove_neutron.get_management_networks(env.ctx) == ["k2hdkc-box"]
    finally:
        CONF.clear_override("management_networks")
        trove_neutron.reset_management_networks()
    # the non-admin factory Trove uses for user_neutron_client (token + URL)
    user_client = clients.neutron_client(env.ctx)
    assert user_client.show_network(net_id)["network"]["name"] == "k2hdkc-box"
    assert trove_neutron.check_extension_enabled(env.neutron, "project-id") is True


def test_security_group_rules_and_port_as_trove_creates_them(env):
    instance_id = str(uuid.uuid4())
    sg_name = "%s-%s" % (CONF.trove_security_group_name_prefix, instance_id)
    sg_id = trove_neutron.create_security_group(env.neutron, sg_name, instance_id)
    tcp_ports = CONF.get("k2hdkc").tcp_ports
    trove_neutron.create_security_group_rule(env.neutron, sg_id, "tcp", tcp_ports, ["0.0.0.0/0"])
    trove_neutron.create_security_group_rule(env.neutron, sg_id, "udp", [], ["0.0.0.0/0"])
    rules = env.neutron.list_security_group_rules(security_group_id=sg_id)["security_group_rules"]
    ingress = sorted((r["protocol"], r["port_range_min"], r["port_range_max"]) for r in rules
                     if r["direction"] == "ingress")
    assert ingress == [("tcp", 8020, 8020), ("tcp", 8021, 8021), ("tcp", 8031, 8031)]
    assert len([r for r in rules if r["direction"] == "egress"]) == 2   # Neutron's defaults
    with pytest.raises(neutron_exc.Conflict):
        trove_neutron.create_security_group_rule(env.neutron, sg_id, "tcp", tcp_ports[:1], ["0.0.0.0/0"])
    # user port, as FreshInstanceTasks._create_port: the access check looks
    # for the subnet's router interface port
    port_id = trove_neutron.create_port(env.neutron, "trove-%s" % instance_id, "User port",
                                        env.seeds["network"]["id"], [sg_id], is_public=False,
                                        subnet_id=None, ip=None, is_mgmt=False, project_id=PROJECT)
    port = env.neutron.show_port(port_id)["port"]
    assert port["security_groups"] == [sg_id]
    ip = port["fixed_ips"][0]["ip_address"]
    assert ip.startswith("10.213.0.") and int(ip.rsplit(".", 1)[1]) >= 10
    assert port["mac_address"].startswith("fa:16:3e:")
    # a fixed address that is taken -> 409, a free one is honoured
    with pytest.raises(neutron_exc.Conflict):
        env.neutron.create_port({"port": {"network_id": env.seeds["network"]["id"],
                                          "fixed_ips": [{"ip_address": ip}]}})
    p2 = env.neutron.create_port({"port": {"network_id": env.seeds["network"]["id"], "security_groups": [],
                                           "fixed_ips": [{"subnet_id": env.seeds["subnet"]["id"],
                                                          "ip_address": "10.213.0.200"}]}})["port"]
    assert p2["fixed_ips"][0]["ip_address"] == "10.213.0.200" and p2["security_groups"] == []
    env.neutron.delete_port(p2["id"])
    # a freed address is not handed out again at once: Trove deletes an
    # instance's port while its server is still going down
    net = {"network_id": env.seeds["network"]["id"], "security_groups": []}
    p3 = env.neutron.create_port({"port": dict(net)})["port"]
    env.neutron.delete_port(p3["id"])
    p4 = env.neutron.create_port({"port": dict(net)})["port"]
    assert p4["fixed_ips"][0]["ip_address"] != p3["fixed_ips"][0]["ip_address"]
    env.neutron.delete_port(p4["id"])
    with pytest.raises(neutron_exc.NotFound):
        env.neutron.create_port({"port": {"network_id": env.seeds["network"]["id"],
                                          "security_groups": [str(uuid.uuid4())]}})
    # is_public: no external network -> Trove's own PublicNetworkNotFound
    with pytest.raises(trove_exc.PublicNetworkNotFound):
        trove_neutron.make_port_public(env.neutron, port_id, PROJECT)
    # a group in use cannot go; Trove's delete order (ports, then groups) works
    with pytest.raises(neutron_exc.Conflict):
        env.neutron.delete_security_group(sg_id)
    for p in env.neutron.list_ports(name="trove-%s" % instance_id)["ports"]:
        trove_neutron.delete_port(env.neutron, p["id"])
    for g in env.neutron.list_security_groups(name=sg_name)["security_groups"]:
        env.neutron.delete_security_group(g["id"])
    assert env.neutron.list_security_groups(name=sg_name)["security_groups"] == []
    assert env.neutron.list_security_group_rules(security_group_id=sg_id)["security_group_rules"] == []


def create_volume(env, name, size=1):
    vol = env.cinder.volumes.create(size=size, name=name, description="datastore volume for x",
                                    volume_type=None)
    wait_for(lambda: env.cinder.volumes.get(vol.id).status in ("available", "error"), what="volume")
    vol = env.cinder.volumes.get(vol.id)
    assert vol.status == "available"
    return vol


def test_volume_create_becomes_available_sparse(env):
    vol = create_volume(env, "trove-vol-test", size=2)
    path = os.path.join(env.state, "volumes", "%s.img" % vol.id)
    st = os.stat(path)
    assert st.st_size == 2 * 1024 ** 3
    assert st.st_blocks * 512 < 1024 * 1024       # sparse, never filled
    assert vol.volume_type == "__DEFAULT__" and vol.size == 2 and vol.attachments == []
    found = env.cinder.volumes.list(search_opts={"name": "trove-vol-test"})
    assert [v.id for v in found] == [vol.id]
    assert [t.name for t in env.cinder.volume_types.list()] == ["__DEFAULT__"]
    env.cinder.volumes.extend(vol.id, 3)
    assert env.cinder.volumes.get(vol.id).size == 3 and os.stat(path).st_size == 3 * 1024 ** 3
    env.cinder.volumes.delete(vol.id)
    assert not os.path.exists(path)
    with pytest.raises(cinder_exc.NotFound):
        env.cinder.volumes.get(vol.id)
    with pytest.raises(cinder_exc.BadRequest):
        env.cinder.volumes.create(size=0, name="bad")


def trove_userdata(files, extra_userdata=None):
    """The user_data FreshInstanceTasks._create_server sends (Trove 26)."""
    cc = inst_models.BaseInstance.prepare_cloud_config(None, files)
    if extra_userdata:
        return inst_models.BaseInstance.combine_cloudinit_userdata(cc, extra_userdata)
    return cc


def create_server_like_trove(env, instance_id, port_id, volume_id, files, extra_userdata=None,
                             extra_meta=None):
    metadata = {"trove_project_id": PROJECT, "trove_user_id": "trove", "trove_instance_id": instance_id}
    metadata.update(extra_meta or {})
    tags = ["trove_instance", "trove_k2hdkc"] + ["%s_%s" % kv for kv in metadata.items()
                                                  if kv[0].startswith("trove_")]
    bdm = [{"uuid": volume_id, "source_type": "volume", "destination_type": "volume",
            "device_name": CONF.block_device_mapping, "volume_size": 1,
            "delete_on_termination": True}] if volume_id else None
    return env.nova.servers.create(
        "k2hdkc-%s" % instance_id[:8], env.seeds["image"]["id"], "k2hdkc-small", key_name=None,
        nics=[{"port-id": port_id}], block_device_mapping_v2=bdm, files={},
        userdata=trove_userdata(files, extra_userdata), tags=tags, availability_zone=None,
        config_drive=False, scheduler_hints=None, meta=metadata)


def test_server_lifecycle_create_reboot_delete(env):
    instance_id = str(uuid.uuid4())
    guest_info = ("[DEFAULT]\nguest_id=%s\ndatastore_manager=k2hdkc\ndatastore_version=1.0.17\n"
                  "tenant_id=%s\nnetwork_isolation=True\ninstance_rpc_encr_key=%s\n"
                  % (instance_id, PROJECT, "k" * 32))
    agent_conf = "[DEFAULT]\ntransport_url = rabbit://trove:secret@10.213.0.1:5672/\n" + "# x" * 200 + "\n"
    files = {"/etc/trove/conf.d/guest_info.conf": guest_info,
             "/etc/trove/conf.d/trove-guestagent.conf": agent_conf,
             "/etc/docker/daemon.json": json.dumps({"bip": "172.30.0.1/24"})}
    # a datastore cloudinit file merged in as Trove does
    extra = ("#cloud-config\nruncmd:\n- [sh, -c, 'echo \"hi: there\" # not a comment']\n"
             "write_files:\n- path: /etc/extra.conf\n  content: |\n    line1\n    line2\n")
    sg_id = trove_neutron.create_security_group(env.neutron, "trove_sg-%s" % instance_id, instance_id)
    port_id = trove_neutron.create_port(env.neutron, "trove-%s" % instance_id, "User port",
                                        env.seeds["network"]["id"], [sg_id], project_id=PROJECT)
    vol = create_volume(env, "trove-%s" % instance_id)
    server = create_server_like_trove(env, instance_id, port_id, vol.id, files, extra,
                                      extra_meta={"fake_hypervisor_sleep": "0.4"})
    sid = server.id
    first = env.nova.servers.get(sid)
    assert first.status == "BUILD"
    assert env.cinder.volumes.get(vol.id).status == "in-use"
    with pytest.raises(cinder_exc.BadRequest):
        env.cinder.volumes.delete(vol.id)          # in-use: refused as Cinder does
    wait_for(lambda: env.nova.servers.get(sid).status == "ACTIVE", what="ACTIVE")
    s = env.nova.servers.get(sid)
    ip = env.neutron.show_port(port_id)["port"]["fixed_ips"][0]["ip_address"]
    assert s.addresses == {"k2hdkc-box": [{"version": 4, "addr": ip, "OS-EXT-IPS:type": "fixed",
                                           "OS-EXT-IPS-MAC:mac_addr": env.neutron.show_port(port_id)
                                           ["port"]["mac_address"]}]}
    assert getattr(s, "OS-EXT-AZ:availability_zone") == "nova"
    assert getattr(s, "OS-EXT-STS:vm_state") == "active" and getattr(s, "OS-EXT-STS:task_state") is None
    assert s.flavor["original_name"] == "k2hdkc.small"            # 2.57 shape
    assert s.metadata["trove_instance_id"] == instance_id
    assert [v["id"] for v in getattr(s, "os-extended-volumes:volumes_attached")] == [vol.id]
    assert s.security_groups == [{"name": "trove_sg-%s" % instance_id}]
    # what Trove reads: ports by device_id (addresses), servers by tags-any
    ports = env.neutron.list_ports(device_id=sid)["ports"]
    assert [p["id"] for p in ports] == [port_id] and ports[0]["status"] == "ACTIVE"
    listed = env.nova.servers.list(search_opts={"tags-any": "trove_instance_id_%s" % instance_id}, limit=-1)
    assert [x.id for x in listed] == [sid]
    # Trove's own loaders (trove-api's instance show/list)
    db_info = types.SimpleNamespace(id=instance_id, compute_instance_id=sid, region_id="RegionOne",
                                    task_status=types.SimpleNamespace(action="NONE"))
    inst_models.load_simple_instance_server_status(env.ctx, db_info)
    inst_models.load_simple_instance_addresses(env.ctx, db_info)
    assert db_info.server_status == "ACTIVE"
    assert db_info.addresses == [{"address": ip, "type": "private", "network": env.seeds["network"]["id"]}]
    assert db_info.ports == [port_id]
    assert inst_models.load_server(env.ctx, instance_id, sid, "RegionOne").id == sid
    with pytest.raises(trove_exc.ComputeInstanceNotFound):
        inst_models.load_server(env.ctx, instance_id, str(uuid.uuid4()), "RegionOne")
    status, body = raw(env, "GET", "/compute/v2.1//%s/servers/%s" % (PROJECT, sid))   # nova_compute_url form
    assert status == 200 and body["server"]["id"] == sid
    att = env.cinder.volumes.get(vol.id).attachments
    assert [(a["server_id"], a["device"]) for a in att] == [(sid, "/dev/vdb")]
    assert [(a.volumeId, a.device) for a in env.nova.volumes.get_server_volumes(sid)] == [(vol.id, "/dev/vdb")]
    assert [i.port_id for i in env.nova.servers.interface_list(sid)] == [port_id]
    # the guest directory
    gdir = os.path.join(env.state, "guests", sid)
    root = os.path.join(gdir, "root")
    for path, content in files.items():
        target = os.path.join(root, path.lstrip("/"))
        assert open(target).read() == content, path
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o600, path
    assert open(os.path.join(root, "etc/extra.conf")).read() == "line1\nline2\n"
    ud = open(os.path.join(gdir, "user-data")).read()
    assert ud.startswith("#cloud-config\n") and "write_files" in ud
    meta = json.load(open(os.path.join(gdir, "meta.json")))
    assert meta["server_id"] == sid and meta["ips"] == [ip]
    assert meta["volumes"] == [{"id": vol.id, "file": os.path.join(env.state, "volumes", vol.id + ".img"),
                                "device": "/dev/vdb", "size_gib": 1, "boot": False}]
    assert meta["metadata"]["trove_instance_id"] == instance_id
    assert meta["networks"][0]["gateway"] == "10.213.0.1" and meta["networks"][0]["prefixlen"] == 24
    assert sorted(f["path"] for f in meta["files"]) == sorted(list(files) + ["/etc/extra.conf"])
    assert "=== exit 0" in open(os.path.join(gdir, "hypervisor.log")).read()
    assert ["up", sid] in hypervisor_calls(env)
    # usage, as Horizon's project Overview reads it (2.40: pages by marker
    # until one has no server)
    nova_240 = nova_client_mod.Client("2.40", session=env.session, service_type="compute",
                                      endpoint_type="public")
    day = datetime.timedelta(days=1)
    now = datetime.datetime.utcnow()
    owner = s.tenant_id           # Trove's service project: it owns guests
    usage = nova_240.usage.get(owner, now - day, now + day)
    assert [u["instance_id"] for u in usage.server_usages] == [sid]
    assert usage.server_usages[0]["flavor"] == "k2hdkc.small" and usage.total_hours > 0
    after = nova_240.usage.get(owner, now - day, now + day, marker=sid)
    assert not getattr(after, "server_usages", None)
    assert not getattr(nova_240.usage.get(owner, now - 2 * day, now - day), "server_usages", None)
    with pytest.raises(nova_exc.BadRequest):
        nova_240.usage.get(owner, now - day, now + day, marker=str(uuid.uuid4()))

    # reboot (BuiltInstanceTasks.reboot: server.reboot(), poll until ACTIVE)
    s.reboot()
    assert env.nova.servers.get(sid).status == "REBOOT"
    with pytest.raises(nova_exc.Conflict):
        env.nova.servers.reboot(sid)
    wait_for(lambda: env.nova.servers.get(sid).status == "ACTIVE", what="ACTIVE after reboot")
    assert ["reboot", sid] in hypervisor_calls(env)

    # delete, in the order of Instance._delete_resources
    env.nova.servers.get(sid).delete()
    during = env.nova.servers.get(sid)
    assert getattr(during, "OS-EXT-STS:task_state") == "deleting"
    for p in env.neutron.list_ports(name="trove-%s" % instance_id)["ports"]:
        trove_neutron.delete_port(env.neutron, p["id"])
    for g in env.neutron.list_security_groups(name="trove_sg-%s" % instance_id)["security_groups"]:
        env.neutron.delete_security_group(g["id"])

    def gone():
        try:
            env.nova.servers.get(sid)
            return False
        except nova_exc.NotFound:
            return True
    wait_for(gone, what="server 404")
    assert ["down", sid] in hypervisor_calls(env)
    # delete_on_termination=True: Nova deleted the volume with the server
    assert env.cinder.volumes.list(search_opts={"name": "trove-%s" % instance_id}) == []
    assert not os.path.exists(os.path.join(env.state, "volumes", vol.id + ".img"))
    assert env.nova.servers.list(search_opts={"tags-any": "trove_instance_id_%s" % instance_id},
                                 limit=-1) == []
    snap = json.load(open(os.path.join(env.state, "state.json")))
    assert sid not in snap["servers"] and port_id not in snap["ports"]


class _Guest:
    """Stands for the guest agent RPC client (not under test here)."""
    calls = []

    def stop_db(self, *args, **kwargs):
        self.calls.append("stop_db")


class _NoNotify:
    def __init__(self, *args, **kwargs):
        pass

    def notify(self):
        pass


def test_trove_taskmanager_create_and_delete_code_paths(env, monkeypatch):
    """FreshInstanceTasks' own network/security group/volume/server code and
    Instance._delete_resources, run against the stand-in; only the database
    rows and the guest RPC are replaced."""
    from trove.taskmanager import models as task_models
    instance_id = str(uuid.uuid4())
    db_info = types.SimpleNamespace(
        id=instance_id, name="db1", tenant_id=PROJECT, region_id="RegionOne", datastore_version_id=None,
        compute_instance_id=None, volume_id=None, flavor_id="k2hdkc-small", volume_size=1,
        task_status=types.SimpleNamespace(action="BUILDING", is_error=False))
    recorded = {}
    fresh = task_models.FreshInstanceTasks(env.ctx, db_info, None, None)
    fresh.ds_version = types.SimpleNamespace(manager="k2hdkc", name="1.0.17")
    monkeypatch.setattr(fresh, "update_db", lambda **kw: (recorded.update(kw), db_info.__dict__.update(kw)))
    networks = fresh._prepare_networks_for_instance("k2hdkc", [{"network_id": env.seeds["network"]["id"]}],
                                                    access={})
    assert len(networks) == 1 and set(networks[0]) == {"port-id"}
    files = {"/etc/trove/conf.d/guest_info.conf": "[DEFAULT]\nguest_id=%s\n" % instance_id}
    volume_info = fresh._create_server_volume("k2hdkc-small", env.seeds["image"]["id"], "k2hdkc", 1, None,
                                              networks, files, None, None, None)
    assert volume_info["device_path"] == "/dev/vdb"
    # novaclient put the image mapping (boot_index 0) in front of Trove's
    assert [(b["source_type"], b["uuid"]) for b in volume_info["block_device"]] == [
        ("image", env.seeds["image"]["id"]), ("volume", recorded["volume_id"])]
    sid = recorded["compute_instance_id"]
    wait_for(lambda: env.nova.servers.get(sid).status == "ACTIVE", what="ACTIVE")
    gdir = os.path.join(env.state, "guests", sid)
    assert open(os.path.join(gdir, "root/etc/trove/conf.d/guest_info.conf")).read() == files[
        "/etc/trove/conf.d/guest_info.conf"]
    meta = json.load(open(os.path.join(gdir, "meta.json")))
    assert meta["metadata"] == {"trove_project_id": PROJECT, "trove_user_id": "trove",
                                "trove_instance_id": instance_id}
    assert meta["volumes"][0]["id"] == recorded["volume_id"]
    port = env.neutron.show_port(networks[0]["port-id"])["port"]
    assert port["name"] == "trove-%s" % instance_id and port["device_id"] == sid
    sg = env.neutron.show_security_group(port["security_groups"][0])["security_group"]
    assert sg["name"] == "%s-%s" % (CONF.trove_security_group_name_prefix, instance_id)

    # delete: BuiltInstanceTasks._delete_resources with the server loaded
    monkeypatch.setattr(inst_models.notification, "TroveInstanceDelete", _NoNotify)
    built = task_models.BuiltInstanceTasks(env.ctx, db_info, env.nova.servers.get(sid), None)
    built._guest = _Guest()
    built.ds_version = fresh.ds_version
    monkeypatch.setattr(built, "server_status_matches", lambda *a, **kw: True)
    built._delete_resources(deleted_at=datetime.datetime.utcnow())
    assert _Guest.calls == ["stop_db"]
    with pytest.raises(nova_exc.NotFound):
        env.nova.servers.get(sid)
    assert ["down", sid] in hypervisor_calls(env)
    assert env.neutron.list_ports(name="trove-%s" % instance_id)["ports"] == []
    assert env.neutron.list_security_groups(name=sg["name"])["security_groups"] == []
    assert env.cinder.volumes.list(search_opts={"name": "trove-%s" % instance_id}) == []


def test_hypervisor_failure_is_a_fault_and_volume_survives(env):
    instance_id = str(uuid.uuid4())
    vol = create_volume(env, "trove-%s" % instance_id)
    port = env.neutron.create_port({"port": {"network_id": env.seeds["network"]["id"],
                                             "name": "trove-%s" % instance_id}})["port"]
    bdm = [{"uuid": vol.id, "source_type": "volume", "destination_type": "volume",
            "device_name": "vdb", "volume_size": 1, "delete_on_termination": False}]
    server = env.nova.servers.create(
        "failing", env.seeds["image"]["id"], "k2hdkc-medium", nics=[{"port-id": port["id"]}],
        block_device_mapping_v2=bdm, userdata=trove_userdata({"/etc/x": "y"}),
        meta={"fake_hypervisor_fail": "up"})
    wait_for(lambda: env.nova.servers.get(server.id).status == "ERROR", what="ERROR")
    s = env.nova.servers.get(server.id)
    assert s.fault["message"] == "fake-hypervisor: up failed as asked"     # last stderr line
    # a port bound to a server cannot be given to another one
    with pytest.raises(nova_exc.Conflict):
        env.nova.servers.create("again", env.seeds["image"]["id"], "k2hdkc-small",
                                nics=[{"port-id": port["id"]}])
    s.delete()
    wait_for(lambda: not [x for x in env.nova.servers.list() if x.id == server.id], what="gone")
    v = env.cinder.volumes.get(vol.id)
    assert v.status == "available" and v.attachments == []
    assert env.neutron.show_port(port["id"])["port"]["device_id"] == ""   # unbound, not deleted
    env.neutron.delete_port(port["id"])
    env.cinder.volumes.delete(vol.id)


def test_server_create_validation_and_personality(env):
    nova_21 = nova_client_mod.Client("2.1", session=env.session, service_type="compute",
                                     region_name="RegionOne", endpoint_type="publicURL")
    with pytest.raises(nova_exc.BadRequest):
        env.nova.servers.create("x", env.seeds["image"]["id"], "no-such-flavor", nics="auto")
    with pytest.raises(nova_exc.BadRequest):
        env.nova.servers.create("x", str(uuid.uuid4()), "k2hdkc-small", nics="auto")
    # 2.57 dropped personality: refused as Nova does; below 2.57 it is honoured
    status, body = raw(env, "POST", "/compute/v2.1/servers",
                       headers={"X-OpenStack-Nova-API-Version": "2.57"},
                       body={"server": {"name": "x", "imageRef": env.seeds["image"]["id"],
                                        "flavorRef": "k2hdkc-small", "networks": "auto",
                                        "personality": [{"path": "/etc/p", "contents": "cQ=="}]}})
    assert status == 400 and "personality" in body["badRequest"]["message"]
    status, body = raw(env, "POST", "/compute/v2.1/servers",
                       headers={"X-OpenStack-Nova-API-Version": "2.57"},
                       body={"server": {"name": "x", "imageRef": env.seeds["image"]["id"],
                                        "flavorRef": "k2hdkc-small"}})
    assert status == 400 and "networks" in body["badRequest"]["message"]
    s = nova_21.servers.create("personality", env.seeds["image"]["id"], "k2hdkc-small",
                               files={"/etc/trove/conf.d/guest_info.conf": "[DEFAULT]\nguest_id=p\n"})
    wait_for(lambda: nova_21.servers.get(s.id).status == "ACTIVE", what="ACTIVE")
    target = os.path.join(env.state, "guests", s.id, "root/etc/trove/conf.d/guest_info.conf")
    assert open(target).read() == "[DEFAULT]\nguest_id=p\n"
    got = nova_21.servers.get(s.id)
    assert "k2hdkc-box" in got.addresses and isinstance(got.flavor, dict) and got.flavor["id"] == "k2hdkc-small"
    nova_21.servers.delete(s.id)
    wait_for(lambda: s.id not in [x.id for x in nova_21.servers.list()], what="gone")
    # the port Nova made itself (networks auto) went with the server
    assert env.neutron.list_ports(device_id=s.id)["ports"] == []


def test_state_is_reloaded_after_restart(tmp_path):
    state = str(tmp_path)
    proc, ready, _ = start_standin(state)
    try:
        status, body = raw_at(ready["url"], "POST", "/volume/v3/volumes",
                              {"volume": {"size": 1, "name": "keep-me"}})
        assert status == 202 and body["volume"]["status"] == "creating"
        vid = body["volume"]["id"]
        wait_for(lambda: raw_at(ready["url"], "GET", "/volume/v3/volumes/" + vid)[1]["volume"]["status"]
                 == "available", what="available")
    finally:
        stop_standin(proc)
    proc, ready, _ = start_standin(state)
    try:
        status, body = raw_at(ready["url"], "GET", "/volume/v3/volumes/detail?name=keep-me")
        assert [v["id"] for v in body["volumes"]] == [vid] and body["volumes"][0]["status"] == "available"
    finally:
        stop_standin(proc)


def raw_at(url, method, path, body=None):
    return raw(types.SimpleNamespace(url=url), method, path, body=body)


def test_unknown_calls_are_404_and_logged(env):
    status, body = raw(env, "GET", "/compute/v2.1/os-hypervisors/detail")
    assert status == 404 and "no handler" in body["error"]["message"]
    status, _ = raw(env, "POST", "/volume/v3/volumes/%s/action" % uuid.uuid4(), body={"os-attach": {}})
    assert status == 404
    log = open(env.err_path).read()
    assert "UNHANDLED GET /compute/v2.1/os-hypervisors/detail" in log
    assert TOKEN not in log


def test_zz_no_trove_call_went_unhandled(env):
    """Everything the clients sent in the tests above had a handler, except
    the two deliberate unknown calls."""
    lines = [line for line in open(env.err_path).read().splitlines() if "UNHANDLED" in line]
    assert len(lines) == 2, lines
    assert "Traceback" not in open(env.err_path).read()


# --------------------------------------------------------------------------
# the cloud-config reader against PyYAML

YAML_SAMPLES = [
    {"write_files": [{"content": "eA==", "encoding": "b64", "owner": "trove:trove",
                      "path": "/etc/trove/conf.d/guest_info.conf"}]},
    {"write_files": [{"path": "/a b/c " * 20, "content": "x" * 300, "owner": "o"}],
     "runcmd": [["sh", "-c", "echo 'hi: there' # no"], "plain", ""], "empty": [], "nothing": {}},
    {"s": ["yes", "no", "0644", "1.5", "null", "~", "", " lead", "trail ", "a: b", "#x", "- y",
           "multi\nline\n\ntext\n", "tab\there", "quote ' and \"", "üñî©ødé", "\x07bell", "true"],
     "n": [1, -2, 0.5, True, False, None], "nested": [[1, [2, {"k": "v"}]], {"a": {"b": {"c": []}}}]},
    {"long": " ".join("word%d" % i for i in range(60)), "longq": "x: " + " ".join(["y"] * 80),
     "longdq": ("line with escape \x01 " * 10) + "\nand a second line " * 5},
]


@pytest.mark.parametrize("doc", YAML_SAMPLES)
def test_yaml_reader_matches_pyyaml_dump(doc):
    for text in (yaml.dump(doc), yaml.dump(doc, default_flow_style=None), yaml.safe_dump(doc, width=40)):
        assert yaml_load(text) == yaml.safe_load(text), text


def test_yaml_reader_block_scalars_and_trove_merge():
    text = ("#cloud-config\nwrite_files:\n- path: /a\n  content: |\n    one\n      two\n\n    three\n"
            "- path: /b\n  content: |-\n    kept\n  permissions: '0644'\n- path: /c\n  content: >\n"
            "    folded\n    text\n\n    para\n- path: /d\n  content: |+\n    keep\n\n"
            "bootcmd: [a, 'b c', {k: v}]\n")
    assert yaml_load(text) == yaml.safe_load(text)
    merged = trove_userdata({"/etc/trove/conf.d/guest_info.conf": "[DEFAULT]\nx=1\n"},
                            "#cloud-config\nruncmd:\n- echo hi\nwrite_files:\n- path: /etc/z\n  content: z\n")
    files = cloud_config_files(merged.encode())
    assert [(f["path"], f["content"]) for f in files] == [
        ("/etc/trove/conf.d/guest_info.conf", b"[DEFAULT]\nx=1\n"), ("/etc/z", b"z")]
    assert cloud_config_files(b"#!/bin/sh\necho hi\n") == []


def test_yaml_reader_fuzz_against_pyyaml():
    """Random documents (any characters in values; plain keys as Trove
    uses), dumped the ways yaml.dump can, read back like PyYAML reads them."""
    import random
    rnd = random.Random(20240601)
    alphabet = list("abc xyz019:#-\"'\n\t\\é{}[],&*!|>%@`?.~=") + ["  ", "\n\n", ": ", " #", "- "]

    def rstr():
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40 if rnd.random() < .8 else 200)))

    def rnode(depth=0):
        r = rnd.random()
        if depth > 3 or r < .5:
            c = rnd.random()
            return rstr() if c < .8 else rnd.randint(-5, 5000) if c < .9 else rnd.choice([True, False, None, 1.5])
        if r < .75:
            return [rnode(depth + 1) for _ in range(rnd.randint(0, 4))]
        return {"k%d" % i: rnode(depth + 1) for i in range(rnd.randint(0, 4))}

    for _ in range(100):
        doc = {"write_files": [rnode(), rnode()], "x": rnode()}
        for kw in ({}, {"default_flow_style": None}, {"width": 20}, {"allow_unicode": True}):
            text = yaml.dump(doc, **kw)
            assert yaml_load(text) == yaml.safe_load(text), text
