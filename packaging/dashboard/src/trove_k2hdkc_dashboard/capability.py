"""K2HDKC in trove-dashboard's datastore capability lists.

``db_capability`` answers "may this datastore launch a cluster / grow and
shrink it" by looking a name up in module-level tuples each time it is
asked, so adding the name here is enough for the Launch Cluster form
(``filter_cluster_datastores``) and the clusters table's Grow and Shrink
actions (``can_modify_cluster``).
"""

from trove_dashboard.content.databases import db_capability

from trove_k2hdkc_dashboard import DATASTORE

LISTS = ("_cluster_capable_datastores", "_cluster_grow_shrink_capable_datastores")


def add_k2hdkc(module=db_capability):
    """Adds k2hdkc to the cluster lists of ``module`` (once)."""
    for name in LISTS:
        current = getattr(module, name)
        if DATASTORE not in current:
            setattr(module, name, tuple(current) + (DATASTORE,))
