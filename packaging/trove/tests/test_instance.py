"""K2HR3 provisioning for lone k2hdkc instances (``trove_k2hdkc.instance``):
Trove's ``Instance.create``, ``InstanceDetailView.data`` and the task
manager's ``delete_instance`` as the plugin wraps them, on trove's real
models and sqlite database. The wrapped create is a recording stand-in
for Trove's (Nova and the task manager are not here), called as trove's
instance service calls it; K2HR3 is test_provisioning's recording fake.
"""

import types

import pytest

from test_cluster import config_group, ctx, ds, dsv, trove  # noqa: F401
from test_provisioning import URL, k2hr3, rows, tctx  # noqa: F401


class TroveCreate(object):
    """Trove's ``Instance.create`` signature; writes the instance row and
    records what it was given. ``fail`` makes it raise."""

    def __init__(self):
        self.calls = []
        self.fail = None

    def __call__(self, cls, context, name, flavor_id, image_id, databases, users, datastore,
                 datastore_version, volume_size, backup_id, availability_zone=None, nics=None,
                 configuration_id=None, slave_of_id=None, cluster_config=None, replica_count=None,
                 volume_type=None, modules=None, locality=None, region_name=None, access=None,
                 ssl_mode=None, ssl_ref=None):
        from trove.instance import models as inst_models
        from trove.instance.tasks import InstanceTasks

        if self.fail:
            raise self.fail
        db = inst_models.DBInstance.create(
            name=name, flavor_id=flavor_id, tenant_id=context.project_id, volume_size=volume_size,
            datastore_version_id=datastore_version.id, task_status=InstanceTasks.BUILDING,
            configuration_id=configuration_id)
        self.calls.append({"id": db.id, "configuration_id": configuration_id, "cluster_config": cluster_config})
        return types.SimpleNamespace(id=db.id, name=name)


def create(ctx, ds, dsv, group, trove_create):
    """As trove.instance.service calls it: the group positionally."""
    from trove.instance import models as inst_models
    from trove_k2hdkc import instance

    wrapped = instance.wrap_create(trove_create)
    return wrapped(inst_models.Instance, ctx, "k1", "f1", "img", [], [], ds, dsv, 1, None, None, None,
                   group, None, replica_count=None, volume_type=None, modules=None, locality=None,
                   region_name=None)


def show(instance_id, dsv):
    from trove_k2hdkc import instance

    view = types.SimpleNamespace(instance=types.SimpleNamespace(id=instance_id, datastore_version=dsv))
    return instance.wrap_detail_data(lambda self: {"instance": {"id": self.instance.id}})(view)["instance"]


def test_a_lone_instance_with_a_group_naming_a_cluster_gets_its_k2hr3_objects_first(tctx, ds, dsv, k2hr3):
    trove_create = TroveCreate()
    group = config_group(tctx, dsv, {"cluster-name": "solo"})
    made = create(tctx, ds, dsv, group, trove_create)
    [call] = trove_create.calls
    # Provisioned before Trove's create, under a new ID; the row then
    # belongs to the instance.
    [(what, token, tenant, base, values)] = k2hr3.calls
    assert (what, token, tenant) == ("provision", "keystone-token-of-the-tenant", "proj")
    assert base.startswith("trove-k2hdkc-") and base != "trove-k2hdkc-%s" % made.id
    assert values["cluster-name"] == "solo"
    # Not a cluster member: only the URL, no cluster ID.
    assert call["cluster_config"] == {"extdata_url": URL + "/v1/extdata/trove/server-0"}
    assert call["configuration_id"] == group
    row = rows()[made.id]
    assert (row.base, row.k2hr3_tenant, row.removal_pending) == (base, "proj", False)
    assert show(made.id, dsv)["k2hdkc_slave_extdata_url"] == URL + "/v1/extdata/trove/slave-0"


@pytest.mark.parametrize("values", [
    {"extdata-url": "https://k2hr3.example.com/v1/extdata/trove/own", "cluster-name": "c"},
    {"chmpx-server-port": "8020"},
])
def test_an_own_extdata_url_or_no_cluster_name_leaves_the_create_as_trove_s(tctx, ds, dsv, k2hr3, values):
    trove_create = TroveCreate()
    made = create(tctx, ds, dsv, config_group(tctx, dsv, values), trove_create)
    assert k2hr3.calls == [] and trove_create.calls[0]["cluster_config"] is None
    assert made.id not in rows() and "k2hdkc_slave_extdata_url" not in show(made.id, dsv)


def test_without_provisioning_configured_nothing_is_asked_of_k2hr3(tctx, ds, dsv):
    trove_create = TroveCreate()
    create(tctx, ds, dsv, config_group(tctx, dsv, {"cluster-name": "solo"}), trove_create)
    assert trove_create.calls[0]["cluster_config"] is None


def test_another_tenant_s_group_is_refused_before_k2hr3_sees_it(tctx, ds, dsv, k2hr3):
    from trove.common import exception
    from trove.common.context import TroveContext

    other = TroveContext(project_id="other-project", user_id="u2", is_admin=False)
    group = config_group(other, dsv, {"cluster-name": "theirs"})
    trove_create = TroveCreate()
    with pytest.raises(exception.NotFound, match="could not be found"):
        create(tctx, ds, dsv, group, trove_create)
    assert k2hr3.calls == [] and trove_create.calls == []


def test_a_create_trove_fails_removes_the_objects_it_made(tctx, ds, dsv, k2hr3):
    trove_create = TroveCreate()
    trove_create.fail = RuntimeError("nova is down")
    with pytest.raises(RuntimeError, match="nova is down"):
        create(tctx, ds, dsv, config_group(tctx, dsv, {"cluster-name": "solo"}), trove_create)
    [made] = [c for c in k2hr3.calls if c[0] == "provision"]
    [removed] = [c for c in k2hr3.calls if c[0] == "remove"]
    assert removed[3] == made[3]
    assert all(r.project_id != tctx.project_id for r in rows().values())


def test_delete_removes_the_objects_once_trove_deleted_the_instance(tctx, ds, dsv, k2hr3):
    from trove.instance import models as inst_models
    from trove_k2hdkc import instance
    from trove_k2hdkc import k2hr3 as client

    trove_create = TroveCreate()
    made = create(tctx, ds, dsv, config_group(tctx, dsv, {"cluster-name": "solo"}), trove_create)
    base = rows()[made.id].base
    deleted = []

    def trove_delete(self, context, instance_id):  # Trove's: the row marked deleted
        deleted.append(instance_id)
        db = inst_models.DBInstance.find_by(id=instance_id)
        db.deleted = True
        db.save()

    # K2HR3 down: kept, pending, for the next delete or the cleanup command.
    k2hr3.fail["remove"] = client.K2hr3Error("remove role %s/server" % base, "unreachable")
    instance.wrap_delete(trove_delete)(None, tctx, made.id)
    assert deleted == [made.id] and rows()[made.id].removal_pending
    # Another instance's delete of the same tenant finishes it.
    other = create(tctx, ds, dsv, config_group(tctx, dsv, {"cluster-name": "two"}), trove_create)
    other_base = rows()[other.id].base
    instance.wrap_delete(trove_delete)(None, tctx, other.id)
    removed = [c[3] for c in k2hr3.calls if c[0] == "remove"]
    assert sorted(removed) == sorted([base, base, other_base])
    assert made.id not in rows() and other.id not in rows()


def test_an_instance_without_objects_is_deleted_as_trove_deletes_it(tctx, ds, dsv, k2hr3):
    from trove_k2hdkc import instance

    deleted = []
    instance.wrap_delete(lambda self, context, instance_id: deleted.append(instance_id))(None, tctx, "no-such-row")
    assert deleted == ["no-such-row"] and k2hr3.calls == []
