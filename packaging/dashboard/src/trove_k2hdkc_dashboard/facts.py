"""What the K2HDKC Overview tabs show, from Trove's API: the configuration
group's K2HR3 values (the EXTDATA URL with its token masked) and the
members with their addresses. Pure functions over API objects, so they are
tested without Horizon running."""

from urllib.parse import urlsplit

# The plugin's defaults (packaging/trove validation rules, the agent).
DEFAULT_PORTS = {
    "chmpx-server-port": 8020,
    "chmpx-server-ctlport": 8021,
    "chmpx-slave-ctlport": 8031,
}


def mask_extdata_url(url):
    """An EXTDATA URL carries K2HR3's token in its path: only where it
    points is shown (``scheme://host/.../extdata/***``)."""
    if not url:
        return ""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return "***"
    path = parts.path
    at = path.find("/extdata/")
    shown = path[: at + len("/extdata/")] if at >= 0 else "/"
    return "%s://%s%s***" % (parts.scheme, parts.netloc, shown)


def configuration_facts(values):
    """The K2HR3 values of a configuration group, for display."""
    values = values or {}
    ports = {k: values.get(k, default) for k, default in DEFAULT_PORTS.items()}
    return {
        "cluster_name": values.get("cluster-name") or "",
        "extdata_url": mask_extdata_url(values.get("extdata-url")),
        "server_port": ports["chmpx-server-port"],
        "server_ctlport": ports["chmpx-server-ctlport"],
        "slave_ctlport": ports["chmpx-slave-ctlport"],
    }


def slave_facts(cluster):
    """The slave role's EXTDATA URL of a cluster whose K2HR3 objects
    Trove made (``k2hdkc_slave_extdata_url`` in the cluster's view):
    application hosts need it whole, so the tenant who owns the cluster
    sees it on request; shown masked until then. None when Trove made no
    objects for the cluster."""
    url = _get(cluster, "k2hdkc_slave_extdata_url")
    if not url:
        return None
    return {"url": url, "masked": mask_extdata_url(url)}


def addresses(instance):
    """An instance's addresses as Trove's API lists them: ``addresses``
    (``[{"address", "type"}]``) and ``ip`` (strings or such dicts)."""
    found = []
    for a in list(_get(instance, "addresses") or []) + list(_get(instance, "ip") or []):
        ip = a.get("address") if isinstance(a, dict) else a
        if isinstance(ip, str) and ip and ip not in found:
            found.append(ip)
    return found


def members(cluster):
    """``[{"name", "id", "status", "addresses"}]`` of a cluster's members."""
    out = []
    for i in _get(cluster, "instances") or []:
        out.append({
            "name": _get(i, "name") or "",
            "id": _get(i, "id") or "",
            "status": _get(i, "status") or "",
            "addresses": ", ".join(addresses(i)),
        })
    return out


def _get(obj, key):
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)
