"""k2hdkc in trove-dashboard's own capability answers, the real module."""

import importlib

from trove_dashboard.content.databases import db_capability

from trove_k2hdkc_dashboard import capability


def test_k2hdkc_may_launch_grow_and_shrink_clusters_once_added():
    importlib.reload(db_capability)
    assert not db_capability.is_cluster_capable_datastore("k2hdkc")
    assert not db_capability.can_modify_cluster("k2hdkc")
    capability.add_k2hdkc()
    capability.add_k2hdkc()  # idempotent
    assert db_capability.is_cluster_capable_datastore("k2hdkc")
    assert db_capability.can_modify_cluster("k2hdkc")
    assert db_capability._cluster_capable_datastores.count("k2hdkc") == 1
    # Nothing else changes.
    assert db_capability.is_cluster_capable_datastore("mongodb")
    assert not db_capability.is_cluster_capable_datastore("mysql")
    assert not db_capability.is_mysql_compatible("k2hdkc")
