"""K2HR3 provisioning wired into Trove's cluster create, grow, show and
delete (``trove_k2hdkc.cluster.provisioning``), on trove's real models
and sqlite database as in test_cluster.py. K2HR3 itself is replaced by
recording fakes of ``trove_k2hdkc.k2hr3``'s calls: the client is tested
against the K2HR3 stand-in and a real Keystone in
tests/standins/k2hr3/test_provisioning.py.
"""

import pytest

from test_cluster import casts, config_group, create, created, ctx, ds, dsv, load, make_cluster  # noqa: F401
from test_cluster import no_server_group, nodes, nova, trove  # noqa: F401

URL = "https://k2hr3.example.com:18080"


class K2hr3(object):
    """Records what the plugin asks of K2HR3; ``fail`` makes a call raise."""

    def __init__(self, k2hr3):
        self.k2hr3 = k2hr3
        self.calls = []
        self.fail = {}
        self.tokens = 0

    def _maybe_fail(self, name):
        if name in self.fail:
            raise self.fail.pop(name)

    def provision(self, api, keystone_token, project, base, template, values):
        self.calls.append(("provision", keystone_token, project, base, values))
        self._maybe_fail("provision")
        assert "{{#!k2hr3template }}" in template
        record = self.k2hr3.Record(project, base, self.k2hr3.created_objects(base))
        return self.k2hr3.Provisioned(record, {"server": URL + "/v1/extdata/trove/server-0",
                                               "slave": URL + "/v1/extdata/trove/slave-0"})

    def user_token(self, api, keystone_token, project):
        self.calls.append(("user_token", keystone_token, project))
        self._maybe_fail("user_token")
        return "U=k2hr3-user-token"

    def role_extdata_url(self, api, token, role):
        self.calls.append(("role_extdata_url", token, role))
        self.tokens += 1
        return URL + "/v1/extdata/trove/server-%d" % self.tokens

    def remove(self, api, keystone_token, record):
        self.calls.append(("remove", keystone_token, record.tenant, record.base, list(record.created)))
        self._maybe_fail("remove")


@pytest.fixture
def k2hr3(trove, monkeypatch):
    """Provisioning on (``k2hr3_provision_url``), the caller's project
    named ``proj``, K2HR3's calls recorded."""
    from trove.common import cfg
    from trove_k2hdkc import k2hr3 as client
    from trove_k2hdkc.cluster import provisioning

    fake = K2hr3(client)
    for name in ("provision", "user_token", "role_extdata_url", "remove"):
        monkeypatch.setattr(client, name, getattr(fake, name))
    monkeypatch.setattr(provisioning, "project_name", lambda context: "proj")
    cfg.CONF.set_override("k2hr3_provision_url", URL, group="k2hdkc")
    yield fake
    cfg.CONF.clear_override("k2hr3_provision_url", group="k2hdkc")


@pytest.fixture
def tctx(ctx):
    ctx.auth_token = "keystone-token-of-the-tenant"
    return ctx


@pytest.fixture
def views(monkeypatch):
    """Trove's cluster view without its members (their ports are Neutron's)."""
    from trove.cluster.views import ClusterView

    monkeypatch.setattr(ClusterView, "data", lambda self: {"cluster": {"id": self.cluster.id}})


def rows():
    from trove_k2hdkc.cluster import provisioning

    with provisioning._engine().begin() as db:
        return {r.cluster_id: r for r in db.execute(provisioning.TABLE.select()).fetchall()}


def test_a_group_naming_only_a_cluster_gets_its_k2hr3_objects_before_any_member(
        tctx, ds, dsv, nova, casts, created, k2hr3, views):
    from trove_k2hdkc.cluster.api import K2hdkcClusterView

    group = config_group(tctx, dsv, {"cluster-name": "c1", "chmpx-server-port": "18020"})
    cluster = create(tctx, ds, dsv, nodes(3), group, name="ring1")
    base = "trove-k2hdkc-%s" % cluster.id
    assert k2hr3.calls == [("provision", "keystone-token-of-the-tenant", "proj", base,
                            {"cluster-name": "c1", "chmpx-server-port": "18020",
                             "chmpx-server-ctlport": "8021", "chmpx-slave-ctlport": "8031"})]
    for r in created:
        assert r["configuration_id"] == group
        assert r["cluster_config"] == {"id": cluster.id, "instance_type": "member", "member_count": 3,
                                       "extdata_url": URL + "/v1/extdata/trove/server-0"}
    row = rows()[cluster.id]
    assert (row.project_id, row.k2hr3_tenant, row.base, row.removal_pending) == (tctx.project_id, "proj", base, False)
    # cluster show: the slave's URL, for application hosts.
    shown = K2hdkcClusterView(cluster, req=None, load_servers=False).data()["cluster"]
    assert shown["k2hdkc_slave_extdata_url"] == URL + "/v1/extdata/trove/slave-0"


def test_an_explicit_extdata_url_is_used_as_before_and_nothing_is_provisioned(
        tctx, ds, dsv, nova, casts, created, k2hr3, views):
    from trove_k2hdkc.cluster.api import K2hdkcClusterView

    cluster = create(tctx, ds, dsv, nodes(2), config_group(tctx, dsv))
    assert k2hr3.calls == [] and cluster.id not in rows()
    assert all("extdata_url" not in r["cluster_config"] for r in created)
    shown = K2hdkcClusterView(cluster, req=None, load_servers=False).data()["cluster"]
    assert "k2hdkc_slave_extdata_url" not in shown


def test_a_group_without_a_cluster_name_is_refused_by_name(tctx, ds, dsv, nova, casts, created, k2hr3):
    from trove.common import exception

    with pytest.raises(exception.BadRequest, match="no cluster-name for K2HR3 to provision"):
        create(tctx, ds, dsv, nodes(2), config_group(tctx, dsv, {"chmpx-server-port": "8020"}))
    assert k2hr3.calls == [] and created == []


@pytest.mark.parametrize("status, answer", [(401, 400), (None, 503), (500, 503)])
def test_a_provisioning_k2hr3_refuses_fails_the_create_naming_k2hr3_and_the_step(
        tctx, ds, dsv, nova, casts, created, k2hr3, status, answer):
    import webob.exc

    from trove.cluster.models import DBCluster
    from trove.common import exception
    from trove_k2hdkc import k2hr3 as client

    k2hr3.fail["provision"] = client.K2hr3Error("create role c/server", "unreachable", status)
    expected = exception.BadRequest if answer == 400 else webob.exc.HTTPServiceUnavailable
    with pytest.raises(expected) as err:
        create(tctx, ds, dsv, nodes(2), config_group(tctx, dsv, {"cluster-name": "c1"}), name="failed")
    assert "K2HR3 create role c/server: unreachable" in str(err.value)
    assert created == [] and casts.sent == []
    assert [c.name for c in DBCluster.find_all(tenant_id=tctx.project_id, deleted=False).all()] == []
    assert rows() == {} or all(r.project_id != tctx.project_id for r in rows().values())


def test_objects_k2hr3_kept_when_it_went_down_half_way_are_recorded_for_removal(
        tctx, ds, dsv, nova, casts, created, k2hr3):
    import webob.exc

    from trove_k2hdkc import k2hr3 as client

    k2hr3.fail["provision"] = client.K2hr3Error(
        "create role x/server", "unreachable", None, [("resource", "x/server"), ("policy", "x/server")])
    with pytest.raises(webob.exc.HTTPServiceUnavailable) as err:
        create(tctx, ds, dsv, nodes(2), config_group(tctx, dsv, {"cluster-name": "c1"}), name="cut")
    assert "left in K2HR3: resource x/server, policy x/server" in str(err.value)
    assert created == [] and casts.sent == []
    [row] = [r for r in rows().values() if r.project_id == tctx.project_id]
    base = k2hr3.calls[0][3]
    assert (row.base, row.removal_pending, row.slave_extdata_url) == (base, True, None)
    # K2HR3 back: the tenant's next removal (a delete, or k2hr3-cleanup) takes them.
    from trove_k2hdkc.cluster import provisioning

    assert provisioning.finish_pending(tctx) == []
    assert [c[3] for c in k2hr3.calls if c[0] == "remove"] == [base]
    assert all(r.project_id != tctx.project_id for r in rows().values())


def test_a_grow_gives_its_members_a_role_token_of_their_own(tctx, ds, dsv, nova, casts, created, k2hr3,
                                                           no_server_group):
    from trove.cluster.tasks import ClusterTasks

    cluster = create(tctx, ds, dsv, nodes(2), config_group(tctx, dsv, {"cluster-name": "c1"}))
    cluster.db_info.update(task_status=ClusterTasks.NONE)  # the create's ring work done
    del created[:]
    load(tctx, cluster.id).grow(nodes(1), None)
    base = "trove-k2hdkc-%s" % cluster.id
    assert k2hr3.calls[1:] == [("user_token", "keystone-token-of-the-tenant", "proj"),
                               ("role_extdata_url", "U=k2hr3-user-token", base + "/server")]
    assert created[0]["cluster_config"]["extdata_url"] == URL + "/v1/extdata/trove/server-1"


def test_delete_removes_the_objects_and_a_k2hr3_down_leaves_them_for_the_next_delete(
        tctx, ds, dsv, nova, casts, created, k2hr3, monkeypatch):
    from trove.taskmanager import models as task_models
    from trove_k2hdkc import k2hr3 as client
    from trove_k2hdkc.cluster.taskmanager import K2hdkcClusterTasks

    first = create(tctx, ds, dsv, nodes(2), config_group(tctx, dsv, {"cluster-name": "c1"}))
    second = create(tctx, ds, dsv, nodes(2), config_group(tctx, dsv, {"cluster-name": "c2"}))

    def trove_delete(self, context, cluster_id):  # Trove's: members gone, the cluster marked deleted
        from trove.cluster.models import DBCluster

        db = DBCluster.find_by(id=cluster_id)
        db.deleted = True
        db.save()

    monkeypatch.setattr(task_models.ClusterTasks, "delete_cluster", trove_delete)
    tasks = K2hdkcClusterTasks.__new__(K2hdkcClusterTasks)
    k2hr3.fail["remove"] = client.K2hr3Error("remove role x/server", "unreachable")
    tasks.delete_cluster(tctx, first.id)
    assert rows()[first.id].removal_pending
    # The next delete of the tenant finishes the first one's too.
    tasks.delete_cluster(tctx, second.id)
    removed = sorted(c[3] for c in k2hr3.calls if c[0] == "remove")
    assert removed == sorted(["trove-k2hdkc-%s" % first.id] * 2 + ["trove-k2hdkc-%s" % second.id])
    assert first.id not in rows() and second.id not in rows()
    last = [c for c in k2hr3.calls if c[0] == "remove"][-1]
    assert last[4] == client.created_objects(last[3])


def test_a_create_whose_members_cannot_be_made_removes_the_objects_it_made(
        tctx, ds, dsv, nova, casts, k2hr3, monkeypatch):
    from trove.instance import models as inst_models

    def no_nova(*args, **kwargs):
        raise RuntimeError("nova is down")

    monkeypatch.setattr(inst_models.Instance, "create", classmethod(lambda cls, *a, **k: no_nova()))
    with pytest.raises(RuntimeError, match="nova is down"):
        create(tctx, ds, dsv, nodes(2), config_group(tctx, dsv, {"cluster-name": "c1"}))
    made = [c for c in k2hr3.calls if c[0] == "provision"]
    removed = [c for c in k2hr3.calls if c[0] == "remove"]
    assert len(made) == 1 and [r[3] for r in removed] == [made[0][3]]
    assert all(r.project_id != tctx.project_id for r in rows().values())


def test_a_k2hr3_message_that_quotes_the_token_is_told_without_it():
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from trove_k2hdkc import k2hr3 as client

    class Quoting(BaseHTTPRequestHandler):
        def do_POST(self):
            token = self.headers["x-auth-token"][2:]
            body = json.dumps({"result": False, "message": "token(%s) does not have any tenant." % token}).encode()
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Quoting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(client.K2hr3Error) as err:
            client.user_token(client.Api("http://127.0.0.1:%d" % server.server_port), "secret-keystone-token", "p")
    finally:
        server.shutdown()
    assert "secret-keystone-token" not in str(err.value)
    assert "token(***) does not have any tenant." in str(err.value) and err.value.status == 401


def test_objects_the_database_cannot_record_are_removed_again(tctx, ds, dsv, nova, casts, created, k2hr3,
                                                             monkeypatch):
    from trove_k2hdkc.cluster import provisioning

    class Broken(object):
        def begin(self):
            raise RuntimeError("database gone")

    provisioning._engine()  # the table exists; then the database fails
    monkeypatch.setattr(provisioning, "_engine", lambda: Broken())
    with pytest.raises(RuntimeError, match="database gone"):
        create(tctx, ds, dsv, nodes(2), config_group(tctx, dsv, {"cluster-name": "c1"}))
    made = [c[3] for c in k2hr3.calls if c[0] == "provision"]
    removed = [c[3] for c in k2hr3.calls if c[0] == "remove"]
    assert made and removed[:1] == made and created == []
