"""The Host column of a cluster's Instances tab shows addresses, not dicts.

trove-dashboard 27 (``content/database_clusters/tables.py`` ``get_host``)
returns ``instance.ip[0]``, and the tab (``tabs.py``
``InstancesTab.get_instances_data``) copies the cluster view's ``ip`` onto
each member: in Trove 26 that is ``get_visible_ip_addresses()``, a list of
``{"address", "type", "network"}`` dicts, so the column printed a Python
dict for every datastore's members. Horizon reads a column through its
``transform``, so replacing that one callable (once, at Django start) is
enough; no trove-dashboard file is edited.
"""

from trove_k2hdkc_dashboard import facts


def _wrap(upstream):
    def get_host(instance):
        # A hostname wins, as upstream has it; else every address, comma
        # separated; else upstream's own answer ("Not Assigned").
        if not hasattr(instance, "hostname"):
            found = facts.addresses(instance)
            if found:
                return ", ".join(found)
        return upstream(instance)
    get_host.k2hdkc = True
    return get_host


def fix_cluster_member_host():
    from trove_dashboard.content.database_clusters import tables

    column = tables.InstancesTable.base_columns["host"]
    if not getattr(column.transform, "k2hdkc", False):
        column.transform = _wrap(column.transform)
