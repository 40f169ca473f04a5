"""The plugin's K2HR3 provisioning (packaging/trove trove_k2hdkc.k2hr3)
against the K2HR3 stand-in, whose user tokens are checked by a real
Keystone: objects made with a tenant's own token, a node's path through
them (EXTDATA, registration, its ini), tenants kept apart, removal, and a
provisioning cut half way.

Needs a running Keystone with the admin and demo users of
tests/box/keystone (tests/run starts one): KEYSTONE_URL and KEYSTONE_WORK
(the directory with admin-password and demo-password).

Run: KEYSTONE_URL=... KEYSTONE_WORK=... .venv/bin/python -m pytest tests/standins/k2hr3/test_provisioning.py
"""

import importlib.util
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..")
# This tree's module, not a copy the venv may hold installed (it needs
# nothing but the standard library).
_spec = importlib.util.spec_from_file_location(
    "trove_k2hdkc_k2hr3", os.path.join(ROOT, "packaging", "trove", "src", "trove_k2hdkc", "k2hr3.py"))
k2hr3 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(k2hr3)

TEMPLATE = open(os.path.join(ROOT, "packaging", "k2hr3", "k2hdkc-resource.k2hr3template")).read()
VALUES = {"cluster-name": "c1", "chmpx-server-port": "8020", "chmpx-server-ctlport": "8021",
          "chmpx-slave-ctlport": "8031"}


def keystone():
    url, work = os.environ.get("KEYSTONE_URL"), os.environ.get("KEYSTONE_WORK")
    if not url or not work:
        pytest.fail("KEYSTONE_URL and KEYSTONE_WORK must name a running Keystone (tests/run starts one)")
    return url.rstrip("/"), work


def keystone_token(user):
    """A project-scoped Keystone token of `user` in the project of the same
    name (tests/box/keystone: admin/admin, demo/demo)."""
    url, work = keystone()
    password = open(os.path.join(work, "%s-password" % user)).read().strip()
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": user, "domain": {"id": "default"}}}}}
    req = urllib.request.Request(url + "/auth/tokens", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers["X-Subject-Token"]


@pytest.fixture
def standin():
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "k2hr3_standin.py"), "--listen", "127.0.0.1:0",
                          "--role", "premade", "--keystone-url", keystone()[0]],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield json.loads(p.stdout.readline())
    finally:
        p.kill()
        p.wait()


def http(method, url, token=None, body=None, ua=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["x-auth-token"] = token
    if ua:
        headers["User-Agent"] = ua
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def state(info):
    return json.loads(http("GET", info["url"] + "/_standin/state")[1])


def own(info, tenant):
    """The objects of one tenant, as the stand-in holds them."""
    s = state(info)
    mark = "yrn:yahoo:::%s:" % tenant
    return sorted([y for y in s["resources"] + s["policies"] + list(s["roles"]) if y.startswith(mark)])


def extdata(url):
    """k2hr3-init's variables an EXTDATA URL gives a node."""
    status, text = http("GET", url, ua="extdata_k2hr3_trove")
    assert status == 200, text
    return dict(line.split("=", 1) for line in text.splitlines() if line.startswith("K2HR3_"))


def test_a_cluster_provisioned_with_the_tenants_token_serves_its_nodes(standin):
    api = k2hr3.Api(standin["url"])
    done = k2hr3.provision(api, keystone_token("demo"), "demo", "k2hdkc-c1-0001", TEMPLATE, VALUES)
    assert own(standin, "demo") == sorted(
        "yrn:yahoo:::demo:%s:k2hdkc-c1-0001/%s" % (kind, side)
        for kind in ("resource", "policy", "role") for side in ("server", "slave"))
    assert sorted(done.extdata_urls) == ["server", "slave"]
    # What a removal from the cluster's name alone would remove.
    assert done.record.created == k2hr3.created_objects("k2hdkc-c1-0001")
    # A grow's members get a token of their own for the same role.
    user = k2hr3.user_token(api, keystone_token("demo"), "demo")
    again = extdata(k2hr3.role_extdata_url(api, user, "k2hdkc-c1-0001/server"))
    assert again["K2HR3_ROLE_NAME"] == '"yrn:yahoo:::demo:role:k2hdkc-c1-0001/server"'

    # A server node: EXTDATA, register, its ini.
    server = extdata(done.extdata_urls["server"])
    role = server["K2HR3_ROLE_NAME"].strip('"')
    token = "R=" + server["K2HR3_ROLE_TOKEN"].strip('"')
    assert role == "yrn:yahoo:::demo:role:k2hdkc-c1-0001/server"
    status, text = http("PUT", standin["url"] + "/v1/role/" + role + "?port=8020&cuk=cuk-1&extra=x&tag=host-1", token)
    assert status == 201, text
    status, text = http("GET", standin["url"] + "/v1/resource/" + role.replace(":role:", ":resource:"), token)
    assert status == 200, text
    ini = json.loads(text)["resource"]
    assert "MODE                   = SERVER" in ini and "CUK                    = cuk-1" in ini
    assert "GROUP                  = c1" in ini and "AUTOMERGE              = off" in ini

    # An application host: the slave side lists the server and itself.
    slave = extdata(done.extdata_urls["slave"])
    srole = slave["K2HR3_ROLE_NAME"].strip('"')
    stoken = "R=" + slave["K2HR3_ROLE_TOKEN"].strip('"')
    status, text = http("PUT", standin["url"] + "/v1/role/" + srole + "?port=8031&cuk=app-1&extra=x&tag=app", stoken)
    assert status == 201, text
    sini = json.loads(http("GET", standin["url"] + "/v1/resource/" + srole.replace(":role:", ":resource:"),
                           stoken)[1])["resource"]
    assert "MODE                   = SLAVE" in sini and "CUK                    = cuk-1" in sini
    assert "CUSTOM_ID_SEED         = app" in sini and "[K2HDKC]" not in sini
    # The slave's token does not read the server's resource.
    assert http("GET", standin["url"] + "/v1/resource/" + role.replace(":role:", ":resource:"), stoken)[0] == 403

    k2hr3.remove(api, keystone_token("demo"), done.record)
    assert own(standin, "demo") == []
    assert extdata_status(done.extdata_urls["server"]) == 404


def extdata_status(url):
    return http("GET", url, ua="extdata_k2hr3_trove")[0]


def test_two_tenants_clusters_of_one_name_never_meet(standin):
    api = k2hr3.Api(standin["url"])
    demo = k2hr3.provision(api, keystone_token("demo"), "demo", "c1", TEMPLATE, VALUES)
    admin = k2hr3.provision(api, keystone_token("admin"), "admin", "c1", TEMPLATE, VALUES)
    assert len(own(standin, "demo")) == 6 and len(own(standin, "admin")) == 6
    # demo's user token reaches none of admin's objects, even by yrn.
    demo_user = k2hr3.user_token(api, keystone_token("demo"), "demo")
    status, _ = http("DELETE", standin["url"] + "/v1/role/yrn:yahoo:::admin:role:c1/server", demo_user)
    assert status == 400
    assert len(own(standin, "admin")) == 6
    # Removing demo's leaves admin's whole.
    k2hr3.remove(api, keystone_token("demo"), demo.record)
    assert own(standin, "demo") == [] and len(own(standin, "admin")) == 6
    assert extdata(admin.extdata_urls["server"])["K2HR3_ROLE_TENANT"] == '"admin"'


def test_a_token_of_another_project_or_none_is_refused(standin):
    api = k2hr3.Api(standin["url"])
    with pytest.raises(k2hr3.K2hr3Error) as e:
        k2hr3.provision(api, keystone_token("demo"), "admin", "c1", TEMPLATE, VALUES)
    assert e.value.step == "user token for project admin" and e.value.status == 401
    with pytest.raises(k2hr3.K2hr3Error) as e:
        k2hr3.provision(api, "not-a-keystone-token", "demo", "c1", TEMPLATE, VALUES)
    assert e.value.status == 401 and "not-a-keystone-token" not in str(e.value)
    assert own(standin, "demo") == own(standin, "admin") == []


def test_a_step_refused_half_way_removes_what_was_made(standin):
    api = k2hr3.Api(standin["url"])
    token = keystone_token("demo")
    # Served: the user token, the server side's 3 objects and its token;
    # refused once: the slave side's resource.
    http("POST", standin["url"] + "/_standin/fault", body={"mode": "error500", "after": 5, "times": 1})
    with pytest.raises(k2hr3.K2hr3Error) as e:
        k2hr3.provision(api, token, "demo", "c1", TEMPLATE, VALUES)
    assert e.value.step == "create resource c1/slave" and e.value.status == 500 and e.value.left == ()
    assert "K2HR3 create resource c1/slave" in str(e.value)
    assert own(standin, "demo") == []


def test_k2hr3_down_half_way_leaves_a_record_a_later_removal_finishes(standin):
    api = k2hr3.Api(standin["url"], timeout=5)
    token = keystone_token("demo")
    http("POST", standin["url"] + "/_standin/fault", body={"mode": "down", "after": 3})
    with pytest.raises(k2hr3.K2hr3Error) as e:
        k2hr3.provision(api, token, "demo", "c1", TEMPLATE, VALUES)
    assert e.value.step == "create role c1/server" and "unreachable" in e.value.cause
    assert e.value.left == (("resource", "c1/server"), ("policy", "c1/server"))
    assert "left in K2HR3: resource c1/server, policy c1/server" in str(e.value)
    assert len(own(standin, "demo")) == 2
    record = k2hr3.Record("demo", "c1", e.value.left)
    # Still down: the removal says what is left; back up: it finishes.
    with pytest.raises(k2hr3.K2hr3Error):
        k2hr3.remove(api, token, k2hr3.Record.from_json(record.to_json()))
    http("POST", standin["url"] + "/_standin/fault", body={"mode": "ok"})
    k2hr3.remove(api, token, k2hr3.Record.from_json(record.to_json()))
    assert own(standin, "demo") == []
