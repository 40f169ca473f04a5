"""The guest directory the OpenStack STAND-IN hands to the HYPERVISOR,
STATE/guests/<server-id>/: root/<absolute path> for every file Trove
injected (Trove 26 sends them in user_data as cloud-config write_files;
personality, honoured below microversion 2.57, comes in as the same
entries), mode 0600; user-data (decoded); meta.json (networks, volumes,
metadata, flavor, key, files), rewritten before reboot and on volume or
interface attach/detach.
"""

import binascii
import ipaddress
import json
import os
import threading

from . import state
from .cloudinit import cloud_config_files
from .common import log
from .state import guest_dir, volume_file
from .yaml_subset import YamlError


def write_meta(sid):
    with state.STORE.lock:
        s = state.STORE.data["servers"].get(sid)
        if s is None:
            return
        gdir = guest_dir(sid)
        nets = []
        ips = []
        for pid in s["ports"]:
            p = state.STORE.data["ports"].get(pid)
            if p is None:
                continue
            net = state.STORE.data["networks"].get(p["network_id"], {})
            for ip in p["fixed_ips"]:
                sub = state.STORE.data["subnets"].get(ip["subnet_id"], {})
                ips.append(ip["ip_address"])
                nets.append({"port_id": pid, "network_id": p["network_id"],
                             "network_name": net.get("name"), "subnet_id": ip["subnet_id"],
                             "ip": ip["ip_address"], "cidr": sub.get("cidr"),
                             "prefixlen": ipaddress.ip_network(sub["cidr"]).prefixlen if sub else None,
                             "gateway": sub.get("gateway_ip"), "mac": p["mac_address"],
                             "security_groups": list(p["security_groups"])})
        flavor = state.STORE.data["flavors"].get(s["flavor_id"], {})
        meta = {"server_id": sid, "name": s["name"], "hostname": s["hostname"], "ips": ips,
                "networks": nets,
                "volumes": [{"id": b["id"], "file": volume_file(b["id"]), "device": b["device"],
                             "size_gib": state.STORE.data["volumes"].get(b["id"], {}).get("size"),
                             "boot": b.get("boot_index") == 0} for b in s["volumes"]],
                "metadata": dict(s["metadata"]), "tags": list(s.get("tags", [])),
                "flavor": {"id": flavor.get("id"), "name": flavor.get("name"),
                           "vcpus": flavor.get("vcpus"), "ram_mb": flavor.get("ram"),
                           "disk_gib": flavor.get("disk")},
                "image_id": s.get("image_id") or None, "config_drive": s.get("config_drive"),
                "key_name": s.get("key_name"),
                "public_key": (state.STORE.data["keypairs"].get(s.get("key_name") or "") or {}).get("public_key"),
                "files": s.get("files", []), "user_data_file": os.path.join(gdir, "user-data")
                if s.get("user_data") else None}
    tmp = os.path.join(gdir, "meta.json.%d.tmp" % threading.get_ident())
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(gdir, "meta.json"))


def prepare_guest_dir(sid, user_data_raw, personality):
    """Writes root/, user-data and meta.json; returns an error message or None."""
    gdir = guest_dir(sid)
    root = os.path.join(gdir, "root")
    os.makedirs(root, exist_ok=True)
    files = list(personality)
    if user_data_raw:
        path = os.path.join(gdir, "user-data")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(user_data_raw)
        try:
            files += cloud_config_files(user_data_raw)
        except (YamlError, ValueError, OSError, binascii.Error) as e:
            return "stand-in could not read the cloud-config write_files of user_data: %s" % e
    written = []
    for entry in files:
        rel = os.path.normpath("/" + entry["path"]).lstrip("/")
        if not entry["path"].startswith("/") or rel.startswith("..") or rel in ("", "."):
            return "injected file path %r is not an absolute path" % entry["path"]
        target = os.path.join(root, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if entry["append"] else os.O_TRUNC)
        fd = os.open(target, flags, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(entry["content"])
        os.chmod(target, 0o600)
        perms = entry.get("permissions")
        written.append({"path": "/" + rel, "owner": entry.get("owner"),
                        "permissions": oct(perms) if isinstance(perms, int) else perms,
                        "size": len(entry["content"])})
    with state.STORE.lock:
        s = state.STORE.data["servers"].get(sid)
        if s is None:
            return None
        s["files"] = written
        state.STORE.save()
    write_meta(sid)
    log("server %s: guest dir %s (%d files)" % (sid, gdir, len(written)))
    return None
