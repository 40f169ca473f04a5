"""The cluster Instances tab's Host column, on trove-dashboard's own table."""

import types

from trove_dashboard.content.database_clusters import tables

from trove_k2hdkc_dashboard import hosts


def _host(instance):
    return tables.InstancesTable.base_columns["host"].get_raw_data(instance)


def _member(**attrs):
    # What InstancesTab.get_instances_data hands the table: the instance
    # (addresses, ip as strings), then the cluster view's ip copied over.
    return types.SimpleNamespace(**attrs)


def test_a_member_shows_its_addresses_not_a_dict():
    trove26 = [{"address": "10.213.0.14", "type": "private", "network": "37929c43"},
               {"address": "172.24.4.9", "type": "public", "network": "a1"}]
    before = _host(_member(ip=trove26))
    assert "{" in str(before)  # upstream prints the dict: the bug this fixes
    hosts.fix_cluster_member_host()
    hosts.fix_cluster_member_host()  # once only
    assert _host(_member(ip=trove26)) == "10.213.0.14, 172.24.4.9"
    assert _host(_member(ip=["10.0.0.6"])) == "10.0.0.6"
    assert _host(_member(addresses=[{"address": "10.0.0.5", "type": "private"}],
                         ip=[{"address": "10.0.0.5", "type": "private"}])) == "10.0.0.5"
    # Upstream's other answers stay.
    assert _host(_member(hostname="h1", ip=trove26)) == "h1"
    assert str(_host(_member(ip=[]))) == "Not Assigned"
