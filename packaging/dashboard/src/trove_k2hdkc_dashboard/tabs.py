"""The facts of the K2HDKC Overview tabs.

trove-dashboard's Overview tabs render their template with only the
instance (or cluster) in the context; the K2HDKC templates also show the
configuration group's K2HR3 values and the members' addresses, which need
Trove's API with the tenant's request. The tabs' ``get_context_data`` is
wrapped (once) to add them as ``k2hdkc`` for a K2HDKC datastore only.
"""

import logging

from trove_dashboard import api as trove_api

from trove_k2hdkc_dashboard import facts
from trove_k2hdkc_dashboard.forms import is_k2hdkc

LOG = logging.getLogger(__name__)


def _configuration_id(obj):
    config = facts._get(obj, "configuration")
    return facts._get(config, "id") if config else None


def _values(request, config_id):
    if not config_id:
        return None
    try:
        return trove_api.trove.configuration_get(request, config_id).values
    except Exception:
        LOG.warning("configuration group %s could not be read", config_id, exc_info=True)
        return None


def instance_facts(request, instance):
    """The K2HR3 values of the instance's configuration group."""
    values = _values(request, _configuration_id(instance))
    return {"configuration": facts.configuration_facts(values) if values is not None else None,
            "addresses": ", ".join(facts.addresses(instance))}


def cluster_facts(request, cluster):
    """The K2HR3 values of the cluster's configuration group (its members
    share it) and its members with their addresses."""
    out = {"members": facts.members(cluster), "configuration": None,
           "slave_extdata": facts.slave_facts(cluster)}
    for member in facts._get(cluster, "instances") or []:
        try:
            instance = trove_api.trove.instance_get(request, facts._get(member, "id"))
        except Exception:
            continue
        values = _values(request, _configuration_id(instance))
        if values is not None:
            out["configuration"] = facts.configuration_facts(values)
            break
    return out


def _wrap(original, key, make):
    def get_context_data(self, request, **kwargs):
        context = original(self, request, **kwargs)
        obj = self.tab_group.kwargs[key]
        if is_k2hdkc((facts._get(obj, "datastore") or {}).get("type")):
            context["k2hdkc"] = make(request, obj)
        return context
    get_context_data.k2hdkc = True
    return get_context_data


def add_k2hdkc_facts():
    from trove_dashboard.content.database_clusters import tabs as cluster_tabs
    from trove_dashboard.content.databases import tabs as instance_tabs

    for tab, key, make in ((instance_tabs.OverviewTab, "instance", instance_facts),
                           (cluster_tabs.OverviewTab, "cluster", cluster_facts)):
        if not getattr(tab.get_context_data, "k2hdkc", False):
            tab.get_context_data = _wrap(tab.get_context_data, key, make)
