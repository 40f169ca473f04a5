"""The k2hdkc cluster strategies against trove's real cluster code.

Trove's own models run on the throw-away sqlite database (DBCluster,
DBInstance, InstanceServiceStatus, configuration groups, quotas). Trove
loads the strategies through ``[k2hdkc] *_strategy``. Fakes stand in only
where Trove would leave the process:

- the RPC clients. A fake guest client answers the ring steps as the agent
  would and records every call: method, arguments, version and timeout.
  Trove's own ``guestagent.api.API._call`` still runs. The task manager
  casts are recorded;
- Nova (flavors);
- ``Instance.create`` and instance delete, which talk to Nova, Cinder,
  Neutron and the notifier. The fakes write the DB rows that Trove would.
"""

import uuid

import pytest

from conftest import VERSION

TENANT_PREFIX = "tenant-k2hdkc-"
GROUP = {"cluster-name": "c1", "extdata-url": "https://k2hr3.example.com/v1/extdata/trove/abc"}


# --- fixtures ------------------------------------------------------------------


@pytest.fixture
def trove(trove_models, monkeypatch):
    """Trove's CONF and DB in this process, with short waits."""
    from trove.common import cfg

    conf = cfg.CONF
    for name, value in (("usage_timeout", 20), ("usage_sleep_time", 1), ("cluster_delete_time_out", 20)):
        conf.set_override(name, value)
    yield trove_models
    for name in ("usage_timeout", "usage_sleep_time", "cluster_delete_time_out"):
        conf.clear_override(name)
    for name in ("cluster_member_timeout", "cluster_merge_timeout", "cluster_merge_rearm_after",
                 "min_cluster_member_count"):
        conf.clear_override(name, group="k2hdkc")


@pytest.fixture
def ctx(trove):
    from trove.common.context import TroveContext

    return TroveContext(project_id=TENANT_PREFIX + uuid.uuid4().hex[:8], user_id="u1", is_admin=False)


@pytest.fixture
def dsv(trove):
    return trove[1]


@pytest.fixture
def ds(trove):
    return trove[0]


def config_group(ctx, dsv, values=None, datastore_version_id=None):
    from trove.configuration import models as config_models

    group = config_models.Configuration.create("g-" + uuid.uuid4().hex[:6], "test", ctx.project_id, None,
                                               datastore_version_id or dsv.id)
    config_models.Configuration.create_items(group.id, dict(GROUP if values is None else values))
    return group.id


class Casts(object):
    """Records the task manager casts (``task_api.API``)."""

    def __init__(self):
        self.sent = []

    def prepare(self, **kwargs):
        return self

    def cast(self, context, method, **kwargs):
        self.sent.append((method, kwargs))

    def can_send_version(self, version):
        return True


@pytest.fixture
def casts(monkeypatch):
    from trove.taskmanager import api as task_api

    recorder = Casts()
    monkeypatch.setattr(task_api.API, "get_client", lambda self, target, cap, serializer=None: recorder)
    return recorder


@pytest.fixture
def nova(monkeypatch):
    """Flavors f1 and f2 exist (no ephemeral disk)."""
    import types

    from novaclient import exceptions as nova_exceptions
    from trove.common import clients

    def get(flavor_id):
        if flavor_id not in ("f1", "f2"):
            raise nova_exceptions.NotFound(404)
        return types.SimpleNamespace(id=flavor_id, ram=1024, ephemeral=0, disk=10)

    client = types.SimpleNamespace(flavors=types.SimpleNamespace(get=get))
    monkeypatch.setattr(clients, "create_nova_client", lambda *a, **k: client)
    return client


@pytest.fixture
def no_server_group(monkeypatch):
    """The cluster's Nova server group (locality): none."""
    from trove.cluster import models as cluster_models

    monkeypatch.setattr(cluster_models.Cluster, "server_group", property(lambda self: None))


@pytest.fixture
def created(monkeypatch):
    """``Instance.create`` records its arguments and writes the rows Trove
    writes (instance, service status NEW); returns the records."""
    import types

    from trove.instance import models as inst_models
    from trove.instance.service_status import ServiceStatuses
    from trove.instance.tasks import InstanceTasks

    records = []

    def create(context, name, flavor_id, image_id, databases, users, datastore, datastore_version, volume_size,
               backup_id, **kwargs):
        cluster_config = kwargs.get("cluster_config") or {}
        db = inst_models.DBInstance.create(
            name=name, flavor_id=flavor_id, tenant_id=context.project_id, volume_size=volume_size,
            datastore_version_id=datastore_version.id, task_status=InstanceTasks.BUILDING,
            configuration_id=kwargs.get("configuration_id"), cluster_id=cluster_config.get("id"),
            type=cluster_config.get("instance_type"))
        inst_models.InstanceServiceStatus.create(instance_id=db.id, status=ServiceStatuses.NEW)
        records.append(dict(kwargs, name=name, flavor_id=flavor_id, image_id=image_id, volume_size=volume_size,
                            id=db.id))
        return types.SimpleNamespace(id=db.id, name=name)

    monkeypatch.setattr(inst_models.Instance, "create", classmethod(lambda cls, *a, **k: create(*a, **k)))
    return records


def make_cluster(ctx, dsv, n, configuration_id, task=None, status=None, flavor="f1", volume=1, name="c"):
    """A cluster of ``n`` members as Trove's create leaves it."""
    from trove.cluster.models import DBCluster
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.models import DBInstance, InstanceServiceStatus
    from trove.instance.service_status import ServiceStatuses
    from trove.instance.tasks import InstanceTasks

    db = DBCluster.create(name=name, tenant_id=ctx.project_id, datastore_version_id=dsv.id,
                          task_status=task or ClusterTasks.NONE, configuration_id=configuration_id)
    ids = []
    for k in range(n):
        inst = DBInstance.create(name="%s-member-%d" % (name, k + 1), flavor_id=flavor, tenant_id=ctx.project_id,
                                 volume_size=volume, datastore_version_id=dsv.id, task_status=InstanceTasks.NONE,
                                 configuration_id=configuration_id, cluster_id=db.id, type="member")
        InstanceServiceStatus.create(instance_id=inst.id, status=status or ServiceStatuses.HEALTHY)
        ids.append(inst.id)
    return db.id, ids


def add_members(ctx, dsv, cluster_id, n, configuration_id, status):
    from trove.instance.models import DBInstance, InstanceServiceStatus
    from trove.instance.tasks import InstanceTasks

    ids = []
    for k in range(n):
        inst = DBInstance.create(name="new-%d" % k, flavor_id="f1", tenant_id=ctx.project_id, volume_size=1,
                                 datastore_version_id=dsv.id, task_status=InstanceTasks.NONE,
                                 configuration_id=configuration_id, cluster_id=cluster_id, type="member")
        InstanceServiceStatus.create(instance_id=inst.id, status=status)
        ids.append(inst.id)
    return ids


def cluster_task(cluster_id):
    from trove.cluster.models import DBCluster

    return DBCluster.find_by(id=cluster_id).task_status


def fault_of(instance_id):
    from trove.instance.models import DBInstanceFault

    fault = DBInstanceFault.find_by(instance_id=instance_id, deleted=False)
    return "%s | %s" % (fault.message, fault.details)


def member_tasks(ids):
    from trove.instance.models import DBInstance

    return [DBInstance.find_by(id=i).get_task_status() for i in ids]


# --- the fake agent ----------------------------------------------------------


class Ring(object):
    """What the members' agents answer; records every RPC call."""

    def __init__(self):
        self.calls = []  # (member, method, kwargs, version, timeout)
        self.fail = {}  # (method, member or None) -> message
        self.reports = {}  # member -> status its heartbeat reports after a restart
        self.no_ring = set()  # members whose prepare failed: no ini, no chmpx

    @staticmethod
    def cuk(member):
        return "cuk-" + member

    def answer(self, member, method, kwargs):
        from oslo_messaging.rpc.client import RemoteError
        from trove.instance.models import InstanceServiceStatus
        from trove.instance.service_status import ServiceStatuses

        message = self.fail.get((method, member), self.fail.get((method, None)))
        if message:
            raise RemoteError("GuestError", message)
        if method == "k2hdkc_ring_status":
            if member in self.no_ring:
                return {"cuk": self.cuk(member), "name": "", "servers": [], "ini_cuks": [],
                        "error": "read k2hdkc.ini: No such file or directory"}
            return {"cuk": self.cuk(member), "name": "10.0.0.%d" % (len(member) % 250), "servers": [], "ini_cuks": []}
        if method == "k2hdkc_ring_converge":
            return {"cuks": sorted(kwargs["cuks"])}
        if method == "k2hdkc_ring_service_in":
            return {"status": "[SERVICE IN][UP][n/a][Nothing][NoSuspend]"}
        if method == "k2hdkc_ring_service_out":
            return {"command": "SERVICEOUT x:8021:" + kwargs["cuk"], "reply": "SUCCEED"}
        if method == "k2hdkc_ring_reattach":
            return {"status": "[SERVICE IN][UP][n/a][Pending][NoSuspend]"}
        if method == "k2hdkc_ring_merge":
            return {"seconds": 4.2, "repairs": []}
        if method == "pre_upgrade":
            return {}
        if method in ("cluster_complete", "restart", "upgrade"):
            status = InstanceServiceStatus.get_by(instance_id=member)
            if status is not None:  # the next heartbeat
                status.set_status(self.reports.get(member, ServiceStatuses.HEALTHY))
                status.save()
            return "healthy" if method == "cluster_complete" else None
        if method == "stop_db":
            return None
        raise AssertionError("the agent has no method %s" % method)

    def steps(self):
        return [(member, method) for member, method, _, _, _ in self.calls]

    def methods(self):
        return [method for _, method, _, _, _ in self.calls]


class Rpc(object):
    def __init__(self, ring, member):
        self.ring = ring
        self.member = member
        self.version = self.timeout = None

    def prepare(self, version=None, timeout=None):
        rpc = Rpc(self.ring, self.member)
        rpc.version, rpc.timeout = version, timeout
        return rpc

    def call(self, context, method, **kwargs):
        self.ring.calls.append((self.member, method, kwargs, self.version, self.timeout))
        return self.ring.answer(self.member, method, kwargs)

    def can_send_version(self, version):
        return True


@pytest.fixture
def ring(monkeypatch):
    """Every k2hdkc guest client (Trove builds them through the strategy)
    talks to one fake ring."""
    from trove_k2hdkc.cluster.guestagent import K2hdkcGuestAgentAPI

    fake = Ring()
    monkeypatch.setattr(K2hdkcGuestAgentAPI, "get_client", lambda self, target, cap, serializer=None: Rpc(fake, self.id))
    return fake


@pytest.fixture
def deletes(monkeypatch):
    """Instance delete as Trove's task manager ends it: the row marked
    deleted. Records the IDs."""
    import types

    from trove.common import timeutils
    from trove.instance import models as inst_models

    deleted = []

    def load_any_instance(context, instance_id, load_server=True):
        def delete():
            from trove.cluster.models import is_cluster_deleting

            db = inst_models.DBInstance.find_by(id=instance_id, deleted=False)
            # Trove's own rule: a member goes only while its cluster deletes or shrinks.
            assert is_cluster_deleting(context, db.cluster_id)
            db.deleted = True
            db.deleted_at = timeutils.utcnow()
            db.save()
            deleted.append(instance_id)

        return types.SimpleNamespace(id=instance_id, delete=delete)

    monkeypatch.setattr(inst_models, "load_any_instance", load_any_instance)
    return deleted


def tasks_for(ctx, cluster_id):
    """The cluster tasks object as trove-taskmanager loads it."""
    from trove.taskmanager import models as task_models

    return task_models.load_cluster_tasks(ctx, cluster_id)


# --- options and loading -------------------------------------------------------


def test_options_and_strategies_load_through_trove(trove):
    from trove.common import cfg
    from trove.common.strategies.cluster import strategy

    from trove_k2hdkc.cluster import api, guestagent, taskmanager

    group = cfg.CONF.k2hdkc
    assert group.cluster_support is True
    assert group.min_cluster_member_count == 2
    assert group.cluster_merge_timeout == 600
    assert group.cluster_member_timeout == 120
    assert group.cluster_merge_rearm_after == 120
    assert group.api_strategy == "trove_k2hdkc.cluster.api.K2hdkcAPIStrategy"
    assert group.taskmanager_strategy == "trove_k2hdkc.cluster.taskmanager.K2hdkcTaskManagerStrategy"
    assert group.guestagent_strategy == "trove_k2hdkc.cluster.guestagent.K2hdkcGuestAgentStrategy"

    api_strategy = strategy.load_api_strategy("k2hdkc")
    assert isinstance(api_strategy, api.K2hdkcAPIStrategy)
    assert api_strategy.cluster_class is api.K2hdkcCluster
    assert api_strategy.cluster_view_class is api.K2hdkcClusterView
    assert api_strategy.mgmt_cluster_view_class is api.K2hdkcMgmtClusterView
    tm = strategy.load_taskmanager_strategy("k2hdkc")
    assert tm.task_manager_cluster_tasks_class is taskmanager.K2hdkcClusterTasks
    assert strategy.load_guestagent_strategy("k2hdkc").guest_client_class is guestagent.K2hdkcGuestAgentAPI


def test_a_member_count_below_two_is_refused_by_the_option_itself(tmp_path):
    from conftest import run_python

    conf = tmp_path / "trove.conf"
    script = r"""
from trove.common import cfg
cfg.parse_args(['x', '--config-file', %r])
print(cfg.CONF.k2hdkc.min_cluster_member_count)
""" % str(conf)
    conf.write_text("[k2hdkc]\nmin_cluster_member_count = 1\n")
    done = run_python(script)
    assert done.returncode != 0
    assert "min_cluster_member_count" in done.stderr
    conf.write_text("[k2hdkc]\nmin_cluster_member_count = 3\n")  # the control
    done = run_python(script)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "3"


def test_the_guest_client_is_trove_s_own_api_with_the_ring_calls(trove, ring):
    """Trove's create_guest_client with the manager gives our client; each
    ring call goes through Trove's _call at version 1.0, with the step's
    bound as ``timeout`` and a longer RPC timeout."""
    from trove.common import cfg
    from trove.common import clients
    from trove.common.exception import GuestError

    cfg.CONF.set_override("cluster_member_timeout", 30, group="k2hdkc")
    cfg.CONF.set_override("cluster_merge_timeout", 300, group="k2hdkc")
    guest = clients.create_guest_client(None, "i1", "k2hdkc")
    assert guest.k2hdkc_ring_status()["cuk"] == "cuk-i1"
    guest.k2hdkc_ring_converge(["a", "b"])
    guest.k2hdkc_ring_service_in()
    guest.k2hdkc_ring_service_out("cuk-x")
    guest.k2hdkc_ring_reattach()
    assert guest.k2hdkc_ring_merge() == {"seconds": 4.2, "repairs": []}
    guest.cluster_complete()
    guest.stop_db_for_removal()
    guest.restart_member()
    got = [(m, k, v, t) for _, m, k, v, t in ring.calls]
    # Two steps and the agent's rejoin merge (300 s).
    restart_bound = max(2 * 30 + 300, cfg.CONF.agent_call_high_timeout)
    assert got == [
        ("k2hdkc_ring_status", {}, "1.0", 45),
        ("k2hdkc_ring_converge", {"cuks": ["a", "b"], "timeout": 30}, "1.0", 45),
        ("k2hdkc_ring_service_in", {"timeout": 30}, "1.0", 45),
        ("k2hdkc_ring_service_out", {"cuk": "cuk-x", "timeout": 30}, "1.0", 45),
        ("k2hdkc_ring_reattach", {"timeout": 30}, "1.0", 45),
        ("k2hdkc_ring_merge", {"timeout": 300, "rearm_after": 120}, "1.0", 330),
        ("cluster_complete", {}, "1.0", cfg.CONF.agent_call_high_timeout),
        ("stop_db", {"do_not_start_on_reboot": True}, "1.0", 45),
        ("restart", {}, "1.0", restart_bound + max(15, restart_bound // 10)),
    ]
    ring.fail[("k2hdkc_ring_merge", None)] = "merge stuck: [ADD][Doing]"
    with pytest.raises(GuestError, match="merge stuck"):
        guest.k2hdkc_ring_merge()


# --- api: create -------------------------------------------------------------


def nodes(n, flavor="f1", size=1):
    return [{"flavor_id": flavor, "volume_size": size, "volume_type": None, "nics": None,
             "availability_zone": None, "region_name": None, "modules": None} for _ in range(n)]


def create(ctx, ds, dsv, instances, configuration, name="c1", extended=None):
    """Trove's own entry point (ClusterController.create calls it)."""
    from trove.cluster import models as cluster_models

    return cluster_models.Cluster.create(ctx, name, ds, dsv, instances, extended or {}, None, configuration, None)


def test_create_makes_members_with_the_group_and_casts_create_cluster(ctx, ds, dsv, nova, casts, created):
    from trove.instance.models import DBInstance
    from trove.cluster.tasks import ClusterTasks

    from trove_k2hdkc.cluster.api import K2hdkcCluster

    group = config_group(ctx, dsv)
    cluster = create(ctx, ds, dsv, nodes(3), group, name="ring1")
    assert isinstance(cluster, K2hdkcCluster)
    assert cluster.db_info.task_status == ClusterTasks.BUILDING_INITIAL
    assert cluster.configuration_id == group
    assert [r["name"] for r in created] == ["ring1-member-1", "ring1-member-2", "ring1-member-3"]
    for r in created:
        assert r["configuration_id"] == group
        assert r["cluster_config"] == {"id": cluster.id, "instance_type": "member",
                                   "member_count": 3}
        assert r["image_id"] == dsv.image_id
        assert (r["flavor_id"], r["volume_size"]) == ("f1", 1)
    assert casts.sent == [("create_cluster", {"cluster_id": cluster.id})]
    assert len(DBInstance.find_all(cluster_id=cluster.id, deleted=False).all()) == 3


def test_create_without_a_configuration_group_is_a_clear_400(ctx, ds, dsv, nova, casts, created):
    from trove.common import exception

    with pytest.raises(exception.BadRequest) as err:
        create(ctx, ds, dsv, nodes(3), None)
    assert "k2hdkc clusters need a configuration group with the K2HR3 values (extdata-url, cluster-name)" in str(err.value)
    assert created == [] and casts.sent == []


def test_create_checks_the_group_exists_matches_and_names_k2hr3(ctx, ds, dsv, nova, casts, created):
    from trove.common import exception

    with pytest.raises(exception.NotFound):
        create(ctx, ds, dsv, nodes(2), str(uuid.uuid4()))
    with pytest.raises(exception.ConfigurationDatastoreNotMatchInstance):
        create(ctx, ds, dsv, nodes(2), config_group(ctx, dsv, datastore_version_id=str(uuid.uuid4())))
    with pytest.raises(exception.BadRequest, match="sets no extdata-url"):
        create(ctx, ds, dsv, nodes(2), config_group(ctx, dsv, {"cluster-name": "c1"}))
    assert created == [] and casts.sent == []
    # the control: the same call with a proper group goes through
    create(ctx, ds, dsv, nodes(2), config_group(ctx, dsv))
    assert len(created) == 2


def test_create_needs_two_members(ctx, ds, dsv, nova, casts, created):
    from trove.common import cfg
    from trove.common import exception

    group = config_group(ctx, dsv)
    with pytest.raises(exception.BadRequest) as err:
        create(ctx, ds, dsv, nodes(1), group)
    assert "k2hdkc cluster needs at least 2 members" in str(err.value)
    assert "REPLICA = 1" in str(err.value)
    cfg.CONF.set_override("min_cluster_member_count", 3, group="k2hdkc")
    with pytest.raises(exception.BadRequest, match="at least 3 members"):
        create(ctx, ds, dsv, nodes(2), group)
    assert created == [] and casts.sent == []


def test_create_needs_one_flavor_and_one_volume_size(ctx, ds, dsv, nova, casts, created):
    from trove.common import exception

    group = config_group(ctx, dsv)
    with pytest.raises(exception.ClusterFlavorsNotEqual):
        create(ctx, ds, dsv, nodes(2) + nodes(1, flavor="f2"), group)
    with pytest.raises(exception.ClusterVolumeSizesNotEqual):
        create(ctx, ds, dsv, nodes(2) + nodes(1, size=2), group)
    with pytest.raises(exception.ClusterVolumeSizeRequired):
        create(ctx, ds, dsv, nodes(2, size=None), group)
    with pytest.raises(exception.FlavorNotFound):
        create(ctx, ds, dsv, nodes(2, flavor="nope"), group)
    assert created == [] and casts.sent == []


def test_create_checks_the_quota(ctx, ds, dsv, nova, casts, created):
    from trove.common import cfg
    from trove.common import exception

    group = config_group(ctx, dsv)
    with pytest.raises(exception.QuotaExceeded):
        create(ctx, ds, dsv, nodes(cfg.CONF.max_instances_per_tenant + 1), group)
    assert created == []


# --- api: grow, shrink, other actions ----------------------------------------


def load(ctx, cluster_id):
    from trove.cluster.models import Cluster

    return Cluster.load(ctx, cluster_id)


def test_grow_adds_members_like_the_others_and_casts_grow_cluster(ctx, dsv, nova, casts, created, no_server_group):
    from trove.cluster.tasks import ClusterTasks

    group = config_group(ctx, dsv)
    cluster_id, _ = make_cluster(ctx, dsv, 3, group, name="g")
    load(ctx, cluster_id).grow([{"flavor_id": "f1", "volume_size": 1}], None)
    assert [r["name"] for r in created] == ["g-member-4"]
    assert created[0]["configuration_id"] == group
    assert created[0]["cluster_config"] == {"id": cluster_id, "instance_type": "member",
                                          "member_count": 4}
    assert cluster_task(cluster_id) == ClusterTasks.GROWING_CLUSTER
    assert casts.sent == [("grow_cluster", {"cluster_id": cluster_id, "new_instance_ids": [created[0]["id"]]})]


def test_grow_refuses_another_flavor_or_size_and_keeps_the_cluster_idle(ctx, dsv, nova, casts, created,
                                                                       no_server_group):
    from trove.cluster.tasks import ClusterTasks
    from trove.common import exception

    cluster_id, _ = make_cluster(ctx, dsv, 2, config_group(ctx, dsv))
    with pytest.raises(exception.ClusterFlavorsNotEqual):
        load(ctx, cluster_id).grow([{"flavor_id": "f2", "volume_size": 1}], None)
    with pytest.raises(exception.ClusterVolumeSizesNotEqual):
        load(ctx, cluster_id).grow([{"flavor_id": "f1", "volume_size": 5}], None)
    assert cluster_task(cluster_id) == ClusterTasks.NONE
    assert created == [] and casts.sent == []


def test_shrink_casts_and_deletes_nothing_itself(ctx, dsv, casts):
    from trove.instance.models import DBInstance
    from trove.cluster.tasks import ClusterTasks

    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv))
    load(ctx, cluster_id).shrink([ids[2]])
    assert cluster_task(cluster_id) == ClusterTasks.SHRINKING_CLUSTER
    assert casts.sent == [("shrink_cluster", {"cluster_id": cluster_id, "instance_ids": [ids[2]]})]
    assert len(DBInstance.find_all(cluster_id=cluster_id, deleted=False).all()) == 3


def test_shrink_refuses_to_leave_fewer_than_two_and_unknown_members(ctx, dsv, casts):
    from trove.cluster.tasks import ClusterTasks
    from trove.common import exception

    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv))
    with pytest.raises(exception.BadRequest) as err:
        load(ctx, cluster_id).shrink(ids[:2])
    assert "k2hdkc cluster keeps at least 2 members" in str(err.value)
    assert "REPLICA = 1" in str(err.value) and "would leave 1" in str(err.value)
    stranger = str(uuid.uuid4())
    with pytest.raises(exception.BadRequest, match="Not members of k2hdkc cluster"):
        load(ctx, cluster_id).shrink([stranger])
    assert cluster_task(cluster_id) == ClusterTasks.NONE
    assert casts.sent == []


def test_shrink_and_grow_wait_for_an_idle_cluster(ctx, dsv, casts, nova, created):
    from trove.cluster.tasks import ClusterTasks
    from trove.common import exception

    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv), task=ClusterTasks.BUILDING_INITIAL)
    with pytest.raises(exception.UnprocessableEntity):
        load(ctx, cluster_id).shrink([ids[0]])
    with pytest.raises(exception.UnprocessableEntity):
        load(ctx, cluster_id).grow([{"flavor_id": "f1", "volume_size": 1}], None)
    assert casts.sent == [] and created == []


def test_restart_is_a_rolling_restart_in_the_taskmanager(ctx, dsv, casts):
    from trove.cluster.tasks import ClusterTasks

    cluster_id, _ = make_cluster(ctx, dsv, 2, config_group(ctx, dsv))
    load(ctx, cluster_id).restart()
    assert cluster_task(cluster_id) == ClusterTasks.RESTARTING_CLUSTER
    assert casts.sent == [("restart_cluster", {"cluster_id": cluster_id})]


def test_delete_tells_every_member_it_is_removed_before_trove_deletes(ctx, dsv, monkeypatch):
    from trove.cluster import models as cluster_models
    from trove_k2hdkc.cluster import api as k2hdkc_api

    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv))
    order = []

    class Guest:
        def __init__(self, instance_id):
            self.id = instance_id

        def leave_for_cluster_delete(self):
            if self.id == ids[1]:
                raise RuntimeError("guest gone")  # one member already gone: the rest still go
            order.append(("removed", self.id))

    monkeypatch.setattr(k2hdkc_api.clients, "create_guest_client", lambda _ctx, iid, _mgr: Guest(iid))
    monkeypatch.setattr(cluster_models.Cluster, "delete", lambda self: order.append(("trove delete", self.id)))
    load(ctx, cluster_id).delete()
    assert sorted(order[:-1]) == sorted(("removed", i) for i in ids if i != ids[1])
    assert order[-1] == ("trove delete", cluster_id), "Trove's delete comes last"


def test_the_removal_cast_is_stop_db_at_1_0_with_the_flag(monkeypatch):
    from trove_k2hdkc.cluster import guestagent

    sent = []
    api = guestagent.K2hdkcGuestAgentAPI.__new__(guestagent.K2hdkcGuestAgentAPI)
    monkeypatch.setattr(api, "_cast", lambda method, version, **kw: sent.append((method, version, kw)), raising=False)
    api.leave_for_cluster_delete()
    assert sent == [("stop_db", "1.0", {"do_not_start_on_reboot": True})]


def test_configuration_changes_and_foreign_versions_are_refused_naming_k2hdkc(ctx, dsv, casts):
    import types

    from trove.cluster.tasks import ClusterTasks
    from trove.common import exception

    cluster_id, _ = make_cluster(ctx, dsv, 2, config_group(ctx, dsv))
    cluster = load(ctx, cluster_id)
    mysql = types.SimpleNamespace(manager="mysql", name="8.0", id="v-mysql")
    for call in (lambda: cluster.upgrade(mysql), lambda: cluster.configuration_attach(config_group(ctx, dsv)),
                 cluster.configuration_detach):
        with pytest.raises(exception.BadRequest, match="k2hdkc cluster"):
            call()
    assert cluster_task(cluster_id) == ClusterTasks.NONE and casts.sent == []


# --- taskmanager -------------------------------------------------------------


def ready(ctx, dsv, n, **kw):
    from trove.instance.service_status import ServiceStatuses

    return make_cluster(ctx, dsv, n, config_group(ctx, dsv), status=ServiceStatuses.INSTANCE_READY, **kw)


def test_create_cluster_forms_the_ring_in_order(ctx, dsv, ring):
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.models import InstanceServiceStatus
    from trove.instance.service_status import ServiceStatuses
    from trove.instance.tasks import InstanceTasks

    from trove_k2hdkc.cluster.taskmanager import K2hdkcClusterTasks

    cluster_id, ids = ready(ctx, dsv, 3, task=ClusterTasks.BUILDING_INITIAL)
    tasks = tasks_for(ctx, cluster_id)
    assert isinstance(tasks, K2hdkcClusterTasks)
    tasks.create_cluster(ctx, cluster_id)
    a, b, c = ids
    assert ring.steps() == [
        (a, "k2hdkc_ring_status"), (b, "k2hdkc_ring_status"), (c, "k2hdkc_ring_status"),
        (a, "k2hdkc_ring_converge"), (b, "k2hdkc_ring_converge"), (c, "k2hdkc_ring_converge"),
        (a, "k2hdkc_ring_service_in"), (b, "k2hdkc_ring_service_in"), (c, "k2hdkc_ring_service_in"),
        (a, "k2hdkc_ring_merge"),
        (a, "cluster_complete"), (b, "cluster_complete"), (c, "cluster_complete"),
    ]
    for _, method, kwargs, _, _ in ring.calls:
        if method == "k2hdkc_ring_converge":
            assert kwargs["cuks"] == [Ring.cuk(a), Ring.cuk(b), Ring.cuk(c)]
    assert cluster_task(cluster_id) == ClusterTasks.NONE
    assert member_tasks(ids) == [InstanceTasks.NONE] * 3
    assert [InstanceServiceStatus.find_by(instance_id=i).get_status() for i in ids] == [ServiceStatuses.HEALTHY] * 3


def test_create_cluster_with_a_failed_member_marks_the_failure(ctx, dsv, ring):
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.models import InstanceServiceStatus
    from trove.instance.service_status import ServiceStatuses
    from trove.instance.tasks import InstanceTasks

    cluster_id, ids = ready(ctx, dsv, 3, task=ClusterTasks.BUILDING_INITIAL)
    status = InstanceServiceStatus.find_by(instance_id=ids[1])
    status.set_status(ServiceStatuses.FAILED)
    status.save()
    tasks_for(ctx, cluster_id).create_cluster(ctx, cluster_id)
    assert ring.calls == []
    assert member_tasks(ids) == [InstanceTasks.BUILDING_ERROR_SERVER] * 3
    assert cluster_task(cluster_id) == ClusterTasks.NONE  # deletable


def test_create_cluster_stops_at_a_failed_merge(ctx, dsv, ring):
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.tasks import InstanceTasks

    cluster_id, ids = ready(ctx, dsv, 2, task=ClusterTasks.BUILDING_INITIAL)
    ring.fail[("k2hdkc_ring_merge", None)] = "merge: still Doing after 600s"
    tasks_for(ctx, cluster_id).create_cluster(ctx, cluster_id)
    assert ring.methods()[-1] == "k2hdkc_ring_merge"
    assert "cluster_complete" not in ring.methods()
    assert member_tasks(ids) == [InstanceTasks.BUILDING_ERROR_SERVER] * 2
    assert cluster_task(cluster_id) == ClusterTasks.NONE


def test_grow_cluster_merges_old_and_new(ctx, dsv, ring):
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.service_status import ServiceStatuses
    from trove.instance.tasks import InstanceTasks

    group = config_group(ctx, dsv)
    cluster_id, old = make_cluster(ctx, dsv, 2, group, task=ClusterTasks.GROWING_CLUSTER)
    new = add_members(ctx, dsv, cluster_id, 2, group, ServiceStatuses.INSTANCE_READY)
    tasks_for(ctx, cluster_id).grow_cluster(ctx, cluster_id, new)
    o1, o2 = old
    n1, n2 = new
    assert ring.steps() == [
        (o1, "k2hdkc_ring_status"), (o2, "k2hdkc_ring_status"), (n1, "k2hdkc_ring_status"),
        (n2, "k2hdkc_ring_status"),
        (o1, "k2hdkc_ring_converge"), (o2, "k2hdkc_ring_converge"), (n1, "k2hdkc_ring_converge"),
        (n2, "k2hdkc_ring_converge"),
        (n1, "k2hdkc_ring_service_in"), (n2, "k2hdkc_ring_service_in"),
        (o1, "k2hdkc_ring_reattach"), (o2, "k2hdkc_ring_reattach"),
        (o1, "k2hdkc_ring_merge"),
        (n1, "cluster_complete"), (n2, "cluster_complete"),
    ]
    converge = [k["cuks"] for _, m, k, _, _ in ring.calls if m == "k2hdkc_ring_converge"]
    assert converge == [[Ring.cuk(i) for i in old + new]] * 4
    assert cluster_task(cluster_id) == ClusterTasks.NONE
    assert member_tasks(old + new) == [InstanceTasks.NONE] * 4


def test_grow_cluster_failure_marks_growing_error(ctx, dsv, ring):
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.service_status import ServiceStatuses
    from trove.instance.tasks import InstanceTasks

    group = config_group(ctx, dsv)
    cluster_id, old = make_cluster(ctx, dsv, 2, group, task=ClusterTasks.GROWING_CLUSTER)
    new = add_members(ctx, dsv, cluster_id, 1, group, ServiceStatuses.INSTANCE_READY)
    ring.fail[("k2hdkc_ring_service_in", new[0])] = "SERVICEIN refused"
    tasks_for(ctx, cluster_id).grow_cluster(ctx, cluster_id, new)
    assert "k2hdkc_ring_merge" not in ring.methods()
    # The old members serve on: only the new one is in error, its fault
    # names the step and the cause.
    assert member_tasks(old + new) == [InstanceTasks.NONE] * 2 + [InstanceTasks.GROWING_ERROR]
    assert cluster_task(cluster_id) == ClusterTasks.NONE
    fault = fault_of(new[0])
    assert "grow failed at k2hdkc_ring_service_in" in fault and "SERVICEIN refused" in fault, fault


def test_grow_cluster_failure_on_an_old_member_marks_it_too(ctx, dsv, ring):
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.service_status import ServiceStatuses
    from trove.instance.tasks import InstanceTasks

    group = config_group(ctx, dsv)
    cluster_id, old = make_cluster(ctx, dsv, 3, group, task=ClusterTasks.GROWING_CLUSTER)
    new = add_members(ctx, dsv, cluster_id, 1, group, ServiceStatuses.INSTANCE_READY)
    ring.fail[("k2hdkc_ring_reattach", old[1])] = "k2hdkc did not attach within 120s"
    tasks_for(ctx, cluster_id).grow_cluster(ctx, cluster_id, new)
    E, N = InstanceTasks.GROWING_ERROR, InstanceTasks.NONE
    assert member_tasks(old + new) == [N, E, N, E]
    assert "k2hdkc did not attach" in fault_of(old[1])


def test_grow_with_a_member_whose_prepare_failed_leaves_the_ring_alone(ctx, dsv, ring):
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.service_status import ServiceStatuses
    from trove.instance.tasks import InstanceTasks

    group = config_group(ctx, dsv)
    cluster_id, old = make_cluster(ctx, dsv, 2, group, task=ClusterTasks.GROWING_CLUSTER)
    new = add_members(ctx, dsv, cluster_id, 1, group, ServiceStatuses.FAILED)
    tasks_for(ctx, cluster_id).grow_cluster(ctx, cluster_id, new)
    assert ring.calls == []
    # Trove's wait marks every member; the old ones serve on and get
    # their task back.
    assert member_tasks(old + new) == [InstanceTasks.NONE] * 2 + [InstanceTasks.GROWING_ERROR]
    assert cluster_task(cluster_id) == ClusterTasks.NONE


def test_shrink_removes_a_member_that_never_joined_without_a_merge(ctx, dsv, ring, deletes):
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.models import DBInstance

    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv), task=ClusterTasks.SHRINKING_CLUSTER)
    a, b, failed = ids
    ring.no_ring.add(failed)
    tasks_for(ctx, cluster_id).shrink_cluster(ctx, cluster_id, [failed])
    assert ring.steps() == [
        (a, "k2hdkc_ring_status"), (b, "k2hdkc_ring_status"), (failed, "k2hdkc_ring_status"),
        (failed, "stop_db"),
        (a, "k2hdkc_ring_converge"), (b, "k2hdkc_ring_converge"),
    ]
    assert deletes == [failed]
    assert [i.id for i in DBInstance.find_all(cluster_id=cluster_id, deleted=False).all()] == [a, b]
    assert cluster_task(cluster_id) == ClusterTasks.NONE


def test_shrink_hands_over_a_member_without_chmpx_that_the_ring_still_lists(ctx, dsv, ring, deletes):
    from trove.cluster.tasks import ClusterTasks

    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv), task=ClusterTasks.SHRINKING_CLUSTER)
    a, b, dead = ids
    ring.no_ring.add(dead)
    ring_answer = ring.answer

    def answer(member, method, kwargs):
        out = ring_answer(member, method, kwargs)
        if method == "k2hdkc_ring_status" and member != dead:
            out["ini_cuks"] = [Ring.cuk(i) for i in ids]
        return out

    ring.answer = answer
    tasks_for(ctx, cluster_id).shrink_cluster(ctx, cluster_id, [dead])
    # Its keys live on in the replicas: the ring still needs the merge.
    assert "k2hdkc_ring_service_out" in ring.methods() and "k2hdkc_ring_merge" in ring.methods()
    assert deletes == [dead]


def test_shrink_refuses_when_a_remaining_member_has_no_ring(ctx, dsv, ring, deletes):
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.tasks import InstanceTasks

    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv), task=ClusterTasks.SHRINKING_CLUSTER)
    ring.no_ring.add(ids[0])
    tasks_for(ctx, cluster_id).shrink_cluster(ctx, cluster_id, [ids[2]])
    assert ring.methods() == ["k2hdkc_ring_status"] * 3
    assert deletes == []
    assert member_tasks(ids) == [InstanceTasks.SHRINKING_ERROR] * 3
    assert "a remaining member has no ring" in fault_of(ids[0])


def test_shrink_cluster_hands_the_keys_over_before_deleting(ctx, dsv, ring, deletes):
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.models import DBInstance

    cluster_id, ids = make_cluster(ctx, dsv, 4, config_group(ctx, dsv), task=ClusterTasks.SHRINKING_CLUSTER)
    a, b, c, d = ids
    order = []
    ring_answer = ring.answer

    def answer(member, method, kwargs):
        order.append((member, method))
        return ring_answer(member, method, kwargs)

    ring.answer = answer
    tasks_for(ctx, cluster_id).shrink_cluster(ctx, cluster_id, [d, b])
    assert ring.steps() == [
        (a, "k2hdkc_ring_status"), (c, "k2hdkc_ring_status"), (b, "k2hdkc_ring_status"), (d, "k2hdkc_ring_status"),
        (a, "k2hdkc_ring_service_out"), (a, "k2hdkc_ring_service_out"),
        (a, "k2hdkc_ring_reattach"), (c, "k2hdkc_ring_reattach"),
        (a, "k2hdkc_ring_merge"),
        (b, "stop_db"), (d, "stop_db"),
        (a, "k2hdkc_ring_converge"), (c, "k2hdkc_ring_converge"),
    ]
    outs = [k["cuk"] for _, m, k, _, _ in ring.calls if m == "k2hdkc_ring_service_out"]
    assert outs == [Ring.cuk(b), Ring.cuk(d)]
    stops = [(k, v) for _, m, k, v, _ in ring.calls if m == "stop_db"]
    assert stops == [({"do_not_start_on_reboot": True}, "1.0")] * 2
    converge = [k["cuks"] for _, m, k, _, _ in ring.calls if m == "k2hdkc_ring_converge"]
    assert converge == [[Ring.cuk(a), Ring.cuk(c)]] * 2
    assert sorted(deletes) == sorted([b, d])
    assert [i.id for i in DBInstance.find_all(cluster_id=cluster_id, deleted=False).all()] == [a, c]
    assert cluster_task(cluster_id) == ClusterTasks.NONE


def test_shrink_cluster_whose_merge_fails_deletes_nothing(ctx, dsv, ring, deletes):
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.models import DBInstance
    from trove.instance.tasks import InstanceTasks

    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv), task=ClusterTasks.SHRINKING_CLUSTER)
    ring.fail[("k2hdkc_ring_merge", None)] = "merge the ring: [DELETE][Doing] for 600s"
    tasks_for(ctx, cluster_id).shrink_cluster(ctx, cluster_id, [ids[2]])
    assert "k2hdkc_ring_merge" in ring.methods()
    assert "stop_db" not in ring.methods() and "k2hdkc_ring_converge" not in ring.methods()
    assert deletes == []
    assert len(DBInstance.find_all(cluster_id=cluster_id, deleted=False).all()) == 3
    assert member_tasks(ids) == [InstanceTasks.SHRINKING_ERROR] * 3
    # NONE: the cluster can be deleted or the shrink repeated, and Trove
    # refuses to delete its members one by one again.
    assert cluster_task(cluster_id) == ClusterTasks.NONE


def test_shrink_cluster_with_a_silent_leaving_member_deletes_nothing(ctx, dsv, ring, deletes):
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.tasks import InstanceTasks

    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv), task=ClusterTasks.SHRINKING_CLUSTER)
    ring.fail[("stop_db", ids[0])] = "leave K2HR3: refused (401)"
    tasks_for(ctx, cluster_id).shrink_cluster(ctx, cluster_id, [ids[0]])
    assert "k2hdkc_ring_merge" in ring.methods()
    assert deletes == []
    assert member_tasks(ids) == [InstanceTasks.SHRINKING_ERROR] * 3


def test_restart_cluster_restarts_one_member_at_a_time(ctx, dsv, ring):
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.tasks import InstanceTasks

    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv), task=ClusterTasks.RESTARTING_CLUSTER)
    tasks_for(ctx, cluster_id).restart_cluster(ctx, cluster_id)
    expected = []
    for i in ids:
        # restarted (the agent merges it back), serviced in and merged if
        # it came back out; the others are left alone: they miss nothing
        expected += [(i, "restart"), (i, "k2hdkc_ring_service_in"), (i, "k2hdkc_ring_merge")]
    assert ring.steps() == expected
    assert member_tasks(ids) == [InstanceTasks.NONE] * 3
    assert cluster_task(cluster_id) == ClusterTasks.NONE


def test_restart_cluster_stops_when_a_member_does_not_come_back(ctx, dsv, ring):
    from trove.cluster.tasks import ClusterTasks

    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv), task=ClusterTasks.RESTARTING_CLUSTER)
    ring.fail[("restart", ids[1])] = "join the ring: not serving after 120s"
    tasks_for(ctx, cluster_id).restart_cluster(ctx, cluster_id)
    restarts = [s for s in ring.steps() if s[1] == "restart"]
    assert restarts == [(ids[0], "restart"), (ids[1], "restart")], "the third is not restarted"
    assert ring.steps()[-1] == (ids[1], "restart"), "no ring step after the failed restart"
    assert cluster_task(cluster_id) == ClusterTasks.NONE


def test_restart_cluster_waits_for_each_member_to_serve_again(ctx, dsv, ring):
    from trove.cluster.tasks import ClusterTasks
    from trove.common import cfg
    from trove.instance.service_status import ServiceStatuses

    cfg.CONF.set_override("cluster_member_timeout", 3, group="k2hdkc")
    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv), task=ClusterTasks.RESTARTING_CLUSTER)
    ring.reports[ids[0]] = ServiceStatuses.RUNNING  # up, but not serving in the ring
    tasks_for(ctx, cluster_id).restart_cluster(ctx, cluster_id)
    assert [s for s in ring.steps() if s[0] == ids[0] or s[1] != "k2hdkc_ring_reattach"] == [
        (ids[0], "restart"), (ids[0], "k2hdkc_ring_service_in"), (ids[0], "k2hdkc_ring_merge")]
    assert (ids[1], "restart") not in ring.steps(), "the next member waits"
    assert cluster_task(cluster_id) == ClusterTasks.NONE


# --- upgrade -------------------------------------------------------------------


@pytest.fixture
def newer(ds, dsv):
    """A second k2hdkc datastore version, 1.0.18."""
    from trove.datastore import models as datastore_models

    datastore_models.update_datastore_version("k2hdkc", "1.0.18", "k2hdkc", dsv.image_id, "", "", 1)
    return datastore_models.DatastoreVersion.load(ds, "1.0.18")


def test_upgrade_is_a_rolling_upgrade_in_the_taskmanager(ctx, dsv, casts, newer):
    from trove.cluster.tasks import ClusterTasks

    cluster_id, _ = make_cluster(ctx, dsv, 3, config_group(ctx, dsv))
    load(ctx, cluster_id).upgrade(newer)
    assert cluster_task(cluster_id) == ClusterTasks.UPGRADING_CLUSTER
    assert casts.sent == [("upgrade_cluster", {"cluster_id": cluster_id, "datastore_version_id": newer.id})]


def test_upgrade_cluster_upgrades_one_member_at_a_time(ctx, dsv, ring, newer):
    from trove.cluster.models import DBCluster
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.models import DBInstance
    from trove.instance.tasks import InstanceTasks

    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv), task=ClusterTasks.UPGRADING_CLUSTER)
    tasks_for(ctx, cluster_id).upgrade_cluster(ctx, cluster_id, newer)
    expected = []
    for i in ids:
        expected += [(i, "pre_upgrade"), (i, "upgrade"), (i, "k2hdkc_ring_service_in"), (i, "k2hdkc_ring_merge")]
    assert ring.steps() == expected
    sent = [kw for _, m, kw, _, _ in ring.calls if m == "upgrade"]
    assert sent[0] == {"upgrade_info": {"datastore_version": "1.0.18"}}
    assert [DBInstance.find_by(id=i).datastore_version_id for i in ids] == [newer.id] * 3
    assert DBCluster.find_by(id=cluster_id).datastore_version_id == newer.id
    assert member_tasks(ids) == [InstanceTasks.NONE] * 3
    assert cluster_task(cluster_id) == ClusterTasks.NONE


def test_upgrade_cluster_stops_at_a_member_that_fails_the_others_untouched(ctx, dsv, ring, newer):
    from trove.cluster.models import DBCluster
    from trove.cluster.tasks import ClusterTasks
    from trove.instance.models import DBInstance, DBInstanceFault
    from trove.instance.tasks import InstanceTasks

    cluster_id, ids = make_cluster(ctx, dsv, 3, config_group(ctx, dsv), task=ClusterTasks.UPGRADING_CLUSTER)
    ring.fail[("upgrade", ids[1])] = "get the image k2hdkc:1.0.18 (nothing was stopped): manifest unknown"
    tasks_for(ctx, cluster_id).upgrade_cluster(ctx, cluster_id, newer)
    assert (ids[2], "pre_upgrade") not in ring.steps(), "the third is not touched"
    assert ring.steps()[-1] == (ids[1], "upgrade"), "no ring step after the failed upgrade"
    assert [DBInstance.find_by(id=i).datastore_version_id for i in ids] == [newer.id, dsv.id, dsv.id]
    assert member_tasks(ids) == [InstanceTasks.NONE, InstanceTasks.UPGRADING_ERROR, InstanceTasks.NONE]
    fault = DBInstanceFault.find_by(instance_id=ids[1])
    assert "upgrade" in fault.message and "manifest unknown" in fault.message
    assert DBCluster.find_by(id=cluster_id).datastore_version_id == dsv.id
    assert cluster_task(cluster_id) == ClusterTasks.NONE

    # Once the cause is fixed, the same upgrade goes on from that member.
    del ring.fail[("upgrade", ids[1])]
    ring.calls.clear()
    tasks_for(ctx, cluster_id).upgrade_cluster(ctx, cluster_id, newer)
    assert [m for m, s in ring.steps() if s == "upgrade"] == ids[1:]
    assert DBCluster.find_by(id=cluster_id).datastore_version_id == newer.id


def test_datastore_version_of_the_tests(dsv):
    assert dsv.name == VERSION and dsv.manager == "k2hdkc"
