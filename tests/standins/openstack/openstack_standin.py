#!/usr/bin/env python3
"""OpenStack STAND-IN for tests: NOT Nova, Cinder, Neutron or Glance.

A test double, Python 3 standard library only, that answers the subset of
the four OpenStack APIs an unmodified Trove 26.0.0 (trove-api and
trove-taskmanager, through python-novaclient, python-cinderclient v3,
python-neutronclient v2.0 and python-glanceclient v2) calls to create,
show, list, reboot and delete a database instance. Servers are not virtual
machines: a server's life is handed to an external HYPERVISOR command.
Production must never point at it.

One port, four path prefixes, each following its public API reference:

  /compute/v2.1   Compute API v2.1 (docs.openstack.org/api-ref/compute),
                  microversions 2.1 .. MAX_NOVA (X-OpenStack-Nova-API-Version
                  or OpenStack-API-Version: compute X.Y; "latest"; out of
                  range -> 406). Servers, flavors (+os-extra_specs),
                  os-volume_attachments, os-interface, os-keypairs,
                  os-server-groups, os-availability-zone, limits.
  /volume/v3      Block Storage API v3 (docs.openstack.org/api-ref/
                  block-storage/v3): volumes, actions os-extend, types,
                  limits, os-quota-sets, os-availability-zone. A project
                  segment after /v3 (/volume/v3/<project_id>/volumes) is
                  accepted but not needed: cinderclient with a keystone
                  session uses the catalog URL as it is.
  /network/v2.0   Networking API v2.0 (docs.openstack.org/api-ref/network/
                  v2): networks, subnets, ports, security-groups,
                  security-group-rules, routers (list/show), floatingips
                  (none; creation answers 404 as no external network
                  exists), extensions.
  /image/v2       Image API v2 (docs.openstack.org/api-ref/image/v2):
                  images list (tag/status/name/visibility/owner filters,
                  limit/marker/sort) and show, image tags, schemas/image(s).

Version discovery documents at /compute, /compute/v2.1, /volume, /volume/v3,
/network, /image and /image/versions answer WITHOUT a token (as the real
services do and as keystoneauth's unauthenticated discovery expects).
Every other request must carry X-Auth-Token, else 401. The token is NOT
validated: Keystone is not this stand-in's job (keystonemiddleware would
sit in front of the real services). Tokens are never logged.

    openstack_standin.py --host 127.0.0.1 --port 8774 --state DIR
        --hypervisor /path/to/cmd --network-cidr 10.213.0.0/24
        --network-name k2hdkc-box [--network-id UUID] [--image-id UUID]
        [--print-catalog] [--print-seeds]

--print-catalog prints the Keystone catalog entries and exits;
--print-seeds prints the seeded ids and exits. Otherwise, once listening,
one JSON line goes to stdout: url, catalog, seeds. --port 0 picks a free
port. One log line per request (method, path, status) goes to stderr;
requests no handler knows are logged with "UNHANDLED" and answered 404.

Servers: POST /servers records the server (status BUILD), binds its ports,
marks its block_device_mapping_v2 volumes in-use, then a thread writes
STATE/guests/<server-id>/: root/<absolute path> for every file Trove
injected (Trove 26 sends them in user_data as cloud-config write_files;
personality is refused from 2.57 as Nova does, honoured below it), mode
0600; user-data (decoded); meta.json; and runs
    HYPERVISOR up <server-id> <guest-dir>
(argv list, --hypervisor-timeout bounded, output to guest-dir/
hypervisor.log). Exit 0 -> ACTIVE, else ERROR with fault.message = the
last stderr line. reboot -> REBOOT, HYPERVISOR reboot, ACTIVE. DELETE ->
task_state deleting, HYPERVISOR down, then the server is gone (404): ports
Nova created are deleted, ports given to it are unbound, volumes with
delete_on_termination are deleted (as Nova does), others detached.

State lives in memory with a JSON snapshot in STATE/state.json after each
change, reloaded at start.
"""

import argparse
import base64
import binascii
import gzip
import hashlib
import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MIN_NOVA = (2, 1)
MAX_NOVA = (2, 96)
MAX_CINDER = (3, 70)
ID_NAMESPACE = uuid.UUID("6f2b8f1e-3c1a-5d4e-9a7b-0c2d4e6f8a10")

CFG = None          # argparse namespace, set in main()
STORE = None        # Store


def stable_id(kind, name):
    """Deterministic UUID for a seeded resource."""
    return str(uuid.uuid5(ID_NAMESPACE, "%s:%s" % (kind, name)))


def ts(fmt="z"):
    t = time.time()
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    if fmt == "cinder":
        return "%s.%06d" % (base, int((t % 1) * 1e6))
    return base + "Z"


def log(msg):
    sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class ApiError(Exception):
    def __init__(self, status, message, kind=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


class Unhandled(Exception):
    pass


# ===========================================================================
# A small YAML reader, enough for the cloud-config Trove renders with
# yaml.dump (block mappings/sequences, indentless sequences, plain, single-
# and double-quoted scalars with line folding, block scalars, simple flow
# collections). Anchors, aliases and tags are refused (YamlError).
# ===========================================================================

class YamlError(ValueError):
    pass


_YAML_NULL = {"", "~", "null", "Null", "NULL"}
_YAML_TRUE = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "y", "Y"}
_YAML_FALSE = {"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "n", "N"}


def _yaml_resolve(s):
    if s in _YAML_NULL:
        return None
    if s in _YAML_TRUE and s not in ("y", "Y"):
        return True
    if s in _YAML_FALSE and s not in ("n", "N"):
        return False
    t = s.replace("_", "")
    try:
        if re.fullmatch(r"[-+]?0b[01]+", t):
            return int(t.replace("0b", ""), 2)
        if re.fullmatch(r"[-+]?0x[0-9a-fA-F]+", t):
            return int(t, 16)
        if re.fullmatch(r"[-+]?0[0-7]+", t):
            return int(t, 8)
        if re.fullmatch(r"[-+]?(0|[1-9][0-9]*)", t):
            return int(t)
        if re.fullmatch(r"[-+]?([0-9][0-9]*)?\.[0-9.]*([eE][-+][0-9]+)?", t) and t not in (".", "+.", "-."):
            return float(t)
        if t in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"):
            return float("inf")
        if t in ("-.inf", "-.Inf", "-.INF"):
            return float("-inf")
        if t in (".nan", ".NaN", ".NAN"):
            return float("nan")
    except ValueError:
        pass
    return s


def _unquote(inner, double):
    """Decode the text between the quotes (may span lines) with YAML's
    escapes (double) or '' (single) and flow line folding."""
    out = []
    protect = 0
    j = 0
    n = len(inner)
    simple = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v",
              "f": "\f", "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\",
              "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029"}
    while j < n:
        c = inner[j]
        if double and c == "\\":
            if j + 1 >= n:
                raise YamlError("dangling backslash")
            e = inner[j + 1]
            if e == "\n":
                j += 2
                while j < n and inner[j] in " \t":
                    j += 1
                continue
            if e in simple:
                out.append(simple[e])
                j += 2
            elif e in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[e]
                try:
                    out.append(chr(int(inner[j + 2:j + 2 + width], 16)))
                except ValueError:
                    raise YamlError("bad escape")
                j += 2 + width
            else:
                raise YamlError("unknown escape \\%s" % e)
            protect = len(out)
            continue
        if not double and c == "'" and j + 1 < n and inner[j + 1] == "'":
            out.append("'")
            j += 2
            protect = len(out)
            continue
        if c == "\n":
            while len(out) > protect and out[-1] in (" ", "\t"):
                out.pop()
            j += 1
            breaks = 0
            while True:
                while j < n and inner[j] in " \t":
                    j += 1
                if j < n and inner[j] == "\n":
                    breaks += 1
                    j += 1
                    continue
                break
            out.append("\n" * breaks if breaks else " ")
            protect = len(out)
            continue
        out.append(c)
        j += 1
    return "".join(out)


def _find_close(text, start, quote):
    """Index of the closing quote in text (opening quote at start-1)."""
    j = start
    while j < len(text):
        c = text[j]
        if quote == '"' and c == "\\":
            j += 2
            continue
        if c == quote:
            if quote == "'" and j + 1 < len(text) and text[j + 1] == "'":
                j += 2
                continue
            return j
        j += 1
    return -1


def _strip_comment(s):
    m = re.search(r"(^|\s)#", s)
    return s[:m.start()].rstrip() if m else s.rstrip()


class _Yaml:
    def __init__(self, text):
        self.lines = text.replace("\r\n", "\n").split("\n")
        self.i = 0

    @staticmethod
    def ind(line):
        return len(line) - len(line.lstrip(" "))

    def skip(self):
        while self.i < len(self.lines):
            s = self.lines[self.i].strip()
            if s == "" or s.startswith("#") or s in ("---", "..."):
                self.i += 1
                continue
            break
        return self.i < len(self.lines)

    @staticmethod
    def split_key(content):
        """(key, rest) when content is `key: ...`, else None."""
        if content[:1] in ('"', "'"):
            close = _find_close(content, 1, content[0])
            if close < 0:
                return None
            after = content[close + 1:]
            if after == ":" or after.startswith(": ") or after.startswith(":\t"):
                return _unquote(content[1:close], content[0] == '"'), after[1:].strip()
            return None
        if content[:1] in ("[", "{", "&", "*", "!", "|", ">", "%", "@", "`") or content.startswith("- ") or content == "-":
            return None
        m = re.search(r":(\s|$)", content)
        if not m:
            return None
        key = content[:m.start()].rstrip()
        if " #" in key or key.startswith("#"):
            return None
        return _yaml_resolve(key) if key else None, content[m.end():].strip()

    def parse(self):
        if not self.skip():
            return None
        value = self.block(0)
        if self.skip():
            raise YamlError("unexpected content at line %d" % (self.i + 1))
        return value

    def block(self, min_indent):
        if not self.skip():
            return None
        line = self.lines[self.i]
        ind = self.ind(line)
        if ind < min_indent:
            return None
        content = line[ind:]
        if content == "-" or content.startswith("- "):
            return self.seq(ind)
        if self.split_key(content) is not None:
            return self.mapping(ind)
        self.i += 1
        return self.value(content.strip(), ind - 1)

    def mapping(self, ind):
        result = {}
        while self.skip():
            line = self.lines[self.i]
            if self.ind(line) != ind:
                if self.ind(line) > ind:
                    raise YamlError("bad indentation at line %d" % (self.i + 1))
                break
            content = line[ind:]
            if content == "-" or content.startswith("- "):
                break
            kv = self.split_key(content)
            if kv is None:
                raise YamlError("expected a mapping key at line %d" % (self.i + 1))
            key, rest = kv
            self.i += 1
            result[key] = self.value(rest, ind, in_map=True)
        return result

    def seq(self, ind):
        result = []
        while self.skip():
            line = self.lines[self.i]
            if self.ind(line) != ind:
                if self.ind(line) > ind:
                    raise YamlError("bad indentation at line %d" % (self.i + 1))
                break
            content = line[ind:]
            if not (content == "-" or content.startswith("- ")):
                break
            after = content[1:]
            rest = after.strip()
            if rest == "" or rest.startswith("#"):
                self.i += 1
                if self.skip() and self.ind(self.lines[self.i]) > ind:
                    result.append(self.block(ind + 1))
                else:
                    result.append(None)
                continue
            if rest == "-" or rest.startswith("- ") or self.split_key(rest) is not None:
                new_ind = ind + 1 + (len(after) - len(after.lstrip(" ")))
                self.lines[self.i] = " " * new_ind + rest
                result.append(self.block(new_ind))
                continue
            self.i += 1
            result.append(self.value(rest, ind))
        return result

    def value(self, rest, ind, in_map=False):
        """A node whose text starts with rest (the rest of the line already
        consumed); continuation lines must be indented more than ind."""
        if rest == "" or rest.startswith("#"):
            if not self.skip():
                return None
            nxt = self.lines[self.i]
            if self.ind(nxt) > ind:
                return self.block(self.ind(nxt))
            if in_map and self.ind(nxt) == ind and (nxt[ind:] == "-" or nxt[ind:].startswith("- ")):
                return self.seq(ind)
            return None
        c = rest[0]
        if c in "&*!":
            raise YamlError("anchors, aliases and tags are not supported")
        if c in "|>":
            return self.block_scalar(rest, ind)
        if c in "\"'":
            text = rest
            while _find_close(text, 1, c) < 0:
                if self.i >= len(self.lines):
                    raise YamlError("unterminated quoted scalar")
                text += "\n" + self.lines[self.i]
                self.i += 1
            close = _find_close(text, 1, c)
            tail = text[close + 1:].strip()
            if tail and not tail.startswith("#"):
                raise YamlError("text after a quoted scalar: %r" % tail)
            return _unquote(text[1:close], c == '"')
        if c in "[{":
            text = rest
            while True:
                try:
                    val, pos = _Flow(text).parse_top()
                    tail = text[pos:].strip()
                    if tail and not tail.startswith("#"):
                        raise YamlError("text after a flow collection")
                    return val
                except _FlowIncomplete:
                    if self.i >= len(self.lines):
                        raise YamlError("unterminated flow collection")
                    text += "\n" + self.lines[self.i]
                    self.i += 1
        # plain scalar, maybe over several lines
        parts = [_strip_comment(rest)]
        if "#" in rest and parts[0] != rest.rstrip():
            return _yaml_resolve(parts[0])
        blanks = 0
        while self.i < len(self.lines):
            line = self.lines[self.i]
            s = line.strip()
            if s == "":
                blanks += 1
                self.i += 1
                continue
            if self.ind(line) <= ind or s.startswith("#"):
                break
            parts.append("\n" * blanks if blanks else " ")
            parts.append(_strip_comment(s))
            blanks = 0
            self.i += 1
        # blank lines at the end belong to nobody
        return _yaml_resolve("".join(parts))

    def block_scalar(self, header, ind):
        m = re.fullmatch(r"([|>])([1-9]?)([-+]?)([1-9]?)\s*(#.*)?", header)
        if not m:
            raise YamlError("bad block scalar header %r" % header)
        style, d1, chomp, d2 = m.group(1), m.group(2), m.group(3), m.group(4)
        explicit = int(d1 or d2) if (d1 or d2) else None
        raw = []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip() == "" or self.ind(line) > ind:
                raw.append(line)
                self.i += 1
                continue
            break
        content_ind = None
        if explicit is not None:
            content_ind = max(ind, 0) + explicit
        else:
            for line in raw:
                if line.strip():
                    content_ind = self.ind(line)
                    break
        if content_ind is None:
            return ""
        body = [line[content_ind:] if len(line) >= content_ind else "" for line in raw]
        # trailing empty lines: chomping
        trailing = 0
        while body and body[-1].strip() == "":
            body.pop()
            trailing += 1
        if style == "|":
            text = "\n".join(body)
        else:
            # folding: a single break between two normal lines becomes a
            # space; empty lines stay breaks; more-indented lines keep theirs
            text = ""
            pending = 0
            last_more = False
            first = True
            for line in body:
                if line.strip() == "":
                    pending += 1
                    continue
                more = line[:1] in (" ", "\t")
                if first:
                    text = "\n" * pending + line
                elif not more and not last_more:
                    text += (" " if pending == 0 else "\n" * pending) + line
                else:
                    text += "\n" * (pending + 1) + line
                first = False
                last_more = more
                pending = 0
        if not body:
            return "\n" * trailing if chomp == "+" else ""
        if chomp == "-":
            return text
        if chomp == "+":
            return text + "\n" + "\n" * trailing
        return text + "\n"


class _FlowIncomplete(Exception):
    pass


class _Flow:
    def __init__(self, text):
        self.t = text
        self.p = 0

    def ws(self):
        while self.p < len(self.t) and self.t[self.p] in " \t\n":
            self.p += 1
        if self.p >= len(self.t):
            raise _FlowIncomplete()

    def parse_top(self):
        v = self.node()
        return v, self.p

    def node(self, in_map=False):
        self.ws()
        c = self.t[self.p]
        if c == "[":
            self.p += 1
            out = []
            while True:
                self.ws()
                if self.t[self.p] == "]":
                    self.p += 1
                    return out
                item = self.node()
                self.ws()
                if self.t[self.p] == ":":
                    self.p += 1
                    item = {item: self.node()}
                    self.ws()
                out.append(item)
                if self.t[self.p] == ",":
                    self.p += 1
                elif self.t[self.p] != "]":
                    raise YamlError("bad flow sequence")
        if c == "{":
            self.p += 1
            out = {}
            while True:
                self.ws()
                if self.t[self.p] == "}":
                    self.p += 1
                    return out
                key = self.node(in_map=True)
                self.ws()
                val = None
                if self.t[self.p] == ":":
                    self.p += 1
                    self.ws()
                    if self.t[self.p] in ",}":
                        val = None
                    else:
                        val = self.node(in_map=True)
                    self.ws()
                out[key] = val
                if self.t[self.p] == ",":
                    self.p += 1
                elif self.t[self.p] != "}":
                    raise YamlError("bad flow mapping")
        if c in "\"'":
            close = _find_close(self.t, self.p + 1, c)
            if close < 0:
                raise _FlowIncomplete()
            s = _unquote(self.t[self.p + 1:close], c == '"')
            self.p = close + 1
            return s
        start = self.p
        while self.p < len(self.t):
            ch = self.t[self.p]
            if ch in ",[]{}":
                break
            if ch == ":" and (self.p + 1 >= len(self.t) or self.t[self.p + 1] in " ,]}\n"):
                break
            self.p += 1
        return _yaml_resolve(_fold_plain(self.t[start:self.p]))


def _fold_plain(raw):
    """Line folding of a plain scalar spread over lines."""
    out = ""
    blanks = 0
    for k, line in enumerate(raw.strip().split("\n")):
        line = line.strip()
        if k == 0:
            out = line
        elif line == "":
            blanks += 1
        else:
            out += ("\n" * blanks if blanks else " ") + line
            blanks = 0
    return out


def yaml_load(text):
    """Parse a YAML document of the subset above; raises YamlError."""
    return _Yaml(text).parse()


def cloud_config_files(user_data):
    """The write_files of a #cloud-config user-data (bytes) as a list of
    dicts {path, content (bytes), owner, permissions, append}; [] when the
    user-data is not cloud-config. Raises YamlError / ValueError."""
    data = user_data
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    text = data.decode("utf-8")
    if not text.lstrip().startswith("#cloud-config"):
        return []
    doc = yaml_load(text)
    if not isinstance(doc, dict):
        raise YamlError("cloud-config is not a mapping")
    files = []
    for entry in doc.get("write_files") or []:
        if not isinstance(entry, dict) or not entry.get("path"):
            raise YamlError("write_files entry without a path: %r" % (entry,))
        content = entry.get("content")
        content = "" if content is None else content
        enc = str(entry.get("encoding") or "text").lower()
        raw = content.encode("utf-8") if isinstance(content, str) else str(content).encode()
        if enc in ("b64", "base64"):
            raw = base64.b64decode(raw)
        elif enc in ("gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
            raw = gzip.decompress(base64.b64decode(raw))
        elif enc in ("gz", "gzip"):
            raw = gzip.decompress(raw)
        elif enc not in ("text", "text/plain"):
            raise YamlError("unknown write_files encoding %r" % enc)
        files.append({"path": str(entry["path"]), "content": raw,
                      "owner": entry.get("owner"), "permissions": entry.get("permissions"),
                      "append": bool(entry.get("append"))})
    return files


# ===========================================================================
# State
# ===========================================================================

COLLECTIONS = ("flavors", "images", "networks", "subnets", "routers", "ports",
               "security_groups", "sg_rules", "volume_types", "volumes", "servers",
               "keypairs", "server_groups")
SEEDED = ("flavors", "images", "networks", "subnets", "routers", "volume_types")


class Store:
    def __init__(self, cfg):
        self.lock = threading.RLock()
        self.op_locks = {}
        self.cfg = cfg
        self.data = {c: {} for c in COLLECTIONS}
        self.path = os.path.join(cfg.state, "state.json")
        self.seed()
        self.reload()

    def seed(self):
        c = self.cfg
        d = self.data
        created = "2024-01-01T00:00:00Z"
        for f in c.flavor_list:
            d["flavors"][f["id"]] = f
        d["images"][c.image_id] = {
            "id": c.image_id, "name": c.image_name, "status": "active", "visibility": "public",
            "protected": False, "os_hidden": False, "tags": list(c.image_tags),
            "container_format": "bare", "disk_format": "qcow2", "min_disk": 0, "min_ram": 0,
            "size": None, "virtual_size": None, "checksum": None, "os_hash_algo": None,
            "os_hash_value": None, "owner": c.project_id, "created_at": created,
            "updated_at": created}
        net = ipaddress.ip_network(c.network_cidr, strict=False)
        gateway = str(net.network_address + 1)
        d["networks"][c.network_id] = {
            "id": c.network_id, "name": c.network_name, "project_id": c.project_id,
            "subnets": [c.subnet_id], "created_at": created, "updated_at": created}
        d["subnets"][c.subnet_id] = {
            "id": c.subnet_id, "name": c.network_name + "-subnet", "network_id": c.network_id,
            "project_id": c.project_id, "cidr": str(net), "ip_version": net.version,
            "gateway_ip": gateway,
            "allocation_pools": [{"start": str(net.network_address + 10),
                                  "end": str(net.broadcast_address - 1)}],
            "created_at": created, "updated_at": created}
        d["routers"][c.router_id] = {
            "id": c.router_id, "name": c.network_name + "-router", "project_id": c.project_id,
            "created_at": created, "updated_at": created}
        # The router's interface on the subnet (Trove's enable_access_check
        # looks for it): a port like any other, owned by the router.
        d["ports"][c.router_port_id] = {
            "id": c.router_port_id, "name": "", "description": "", "network_id": c.network_id,
            "project_id": c.project_id, "mac_address": mac_for(c.router_port_id),
            "fixed_ips": [{"subnet_id": c.subnet_id, "ip_address": gateway}],
            "security_groups": [], "device_id": c.router_id,
            "device_owner": "network:router_interface", "status": "ACTIVE",
            "binding:host_id": "standin-host", "admin_state_up": True,
            "port_security_enabled": False, "created_at": created, "updated_at": created,
            "revision_number": 1}
        d["volume_types"][c.volume_type_id] = {
            "id": c.volume_type_id, "name": "__DEFAULT__", "description": "Default Volume Type",
            "is_public": True, "extra_specs": {}, "qos_specs_id": None,
            "os-volume-type-access:is_public": True}
        if c.default_sg_id not in d["security_groups"]:
            self.new_security_group("default", "Default security group", c.project_id,
                                    sg_id=c.default_sg_id, created=created)

    def new_security_group(self, name, description, project_id, sg_id=None, created=None):
        sg_id = sg_id or str(uuid.uuid4())
        now = created or ts()
        self.data["security_groups"][sg_id] = {
            "id": sg_id, "name": name, "description": description, "project_id": project_id,
            "stateful": True, "created_at": now, "updated_at": now, "revision_number": 1}
        # Neutron adds the two egress rules to every new group (and, for the
        # default group, ingress from members of the group).
        specs = [("egress", "IPv4", None), ("egress", "IPv6", None)]
        if name == "default":
            specs += [("ingress", "IPv4", sg_id), ("ingress", "IPv6", sg_id)]
        for direction, ethertype, remote_group in specs:
            rid = stable_id("sg-rule", "%s/%s/%s" % (sg_id, direction, ethertype)) if created else str(uuid.uuid4())
            self.data["sg_rules"][rid] = {
                "id": rid, "security_group_id": sg_id, "direction": direction,
                "ethertype": ethertype, "protocol": None, "port_range_min": None,
                "port_range_max": None, "remote_ip_prefix": None,
                "remote_group_id": remote_group, "description": None,
                "project_id": project_id, "created_at": now, "updated_at": now,
                "revision_number": 0}
        return self.data["security_groups"][sg_id]

    def reload(self):
        if not os.path.isfile(self.path):
            return
        try:
            with open(self.path) as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            log("state: cannot reload %s (%s); starting empty" % (self.path, e))
            return
        for coll in COLLECTIONS:
            if coll in SEEDED:
                continue
            for k, v in (old.get(coll) or {}).items():
                self.data[coll].setdefault(k, v)
        # keep the routers' interface ports of the new seed, drop stale ones
        for pid, p in list(self.data["ports"].items()):
            if p.get("device_owner") == "network:router_interface" and pid != self.cfg.router_port_id:
                del self.data["ports"][pid]
            elif p["network_id"] not in self.data["networks"]:
                log("state: dropping port %s of unknown network %s" % (pid, p["network_id"]))
                del self.data["ports"][pid]
        for s in self.data["servers"].values():
            if s["status"] in ("BUILD", "REBOOT", "HARD_REBOOT") or s.get("task_state"):
                s.update(status="ERROR", vm_state="error", task_state=None, power_state=0,
                         fault=fault("stand-in restarted while the server was %s"
                                     % (s.get("task_state") or s["status"])))
        for v in self.data["volumes"].values():
            if v["status"] in ("creating", "deleting", "extending"):
                v["status"] = "available" if os.path.exists(volume_file(v["id"])) else "error"
        log("state: reloaded %d servers, %d volumes, %d ports from %s" % (
            len(self.data["servers"]), len(self.data["volumes"]), len(self.data["ports"]), self.path))
        self.save()

    def save(self):
        with self.lock:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)

    def op_lock(self, server_id):
        with self.lock:
            return self.op_locks.setdefault(server_id, threading.Lock())


def fault(message, code=500, details=""):
    return {"code": code, "created": ts(), "message": message, "details": details}


def mac_for(port_id):
    h = hashlib.sha256(port_id.encode()).digest()
    return "fa:16:3e:%02x:%02x:%02x" % (h[0], h[1], h[2])


def volume_file(volume_id):
    return os.path.join(CFG.state, "volumes", "%s.img" % volume_id)


def guest_dir(server_id):
    return os.path.join(CFG.state, "guests", server_id)


def ver_tuple(s):
    m = re.fullmatch(r"(\d+)\.(\d+)", s.strip())
    if not m:
        return None
    return int(m.group(1)), int(m.group(2))


def ver_str(v):
    return "%d.%d" % v


def first_query(q, key, default=None):
    vals = q.get(key)
    return vals[0] if vals else default


def int_query(q, key, default):
    raw = first_query(q, key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "Invalid %s value %r: not an integer" % (key, raw))


def parse_bool(v):
    if isinstance(v, bool):
        return v
    return str(v).strip().lower() in ("1", "true", "yes", "on", "t", "y")


# ===========================================================================
# The hypervisor
# ===========================================================================

def run_hypervisor(action, server_id, gdir):
    """Run HYPERVISOR action server-id guest-dir, bounded; returns
    (exit code or None on timeout, last stderr line)."""
    os.makedirs(gdir, exist_ok=True)
    argv = [CFG.hypervisor, action, server_id, gdir]
    log_path = os.path.join(gdir, "hypervisor.log")
    started = time.time()
    last = [""]
    with open(log_path, "ab") as out:
        out.write(("=== %s %s %s %s\n" % (ts(), action, server_id, gdir)).encode())
        out.flush()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.PIPE, cwd=gdir, start_new_session=True)
        except OSError as e:
            msg = "cannot run the hypervisor %s: %s" % (CFG.hypervisor, e)
            out.write((msg + "\n").encode())
            log("hypervisor %s %s: %s" % (action, server_id, msg))
            return 127, msg

        def pump():
            for line in proc.stderr:
                out.write(line)
                out.flush()
                s = line.decode("utf-8", "replace").strip()
                if s:
                    last[0] = s

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=CFG.hypervisor_timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            rc = None
            last[0] = "hypervisor %s timed out after %ss" % (action, CFG.hypervisor_timeout)
        reader.join(timeout=5)
        out.write(("=== exit %s after %.1fs\n" % (rc, time.time() - started)).encode())
    log("hypervisor %s %s -> %s (%.1fs)" % (action, server_id, rc, time.time() - started))
    if rc not in (0, None) and not last[0]:
        last[0] = "hypervisor %s exited with %s" % (action, rc)
    return rc, last[0]


# ===========================================================================
# Requests
# ===========================================================================

class Request:
    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    @property
    def token(self):
        return bool((self.headers.get("X-Auth-Token") or "").strip())


def json_body(req, key):
    if not isinstance(req.body, dict) or not isinstance(req.body.get(key), dict):
        raise ApiError(400, "Invalid input: the request body must be a JSON object with %r" % key)
    return req.body[key]


def match_routes(routes, method, path):
    for m, pattern, fn in routes:
        mt = re.fullmatch(pattern, path)
        if mt:
            if m != method:
                continue
            return fn, mt.groupdict()
    return None, None


UNAUTHORIZED = {"error": {"code": 401, "title": "Unauthorized",
                          "message": "The request you have made requires authentication."}}


class Service:
    prefix = ""
    routes = ()

    def url(self, *parts):
        return CFG.public_url + self.prefix + "".join(parts)

    def error_body(self, e):
        key = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 406: "notAcceptable",
               409: "conflictingRequest", 413: "overLimit"}.get(e.status, "computeFault")
        return {key: {"code": e.status, "message": e.message}}


# --------------------------------------------------------------------------
# Compute
# --------------------------------------------------------------------------

NOVA_COLLECTIONS = {"servers", "flavors", "os-keypairs", "os-server-groups", "os-availability-zone",
                    "limits", "extensions", "images", "os-hypervisors", "os-quota-sets",
                    "os-services", "os-aggregates", "os-simple-tenant-usage", "os-migrations",
                    "os-instance-actions", "os-volumes", "os-networks", "os-floating-ips",
                    "os-security-groups", "os-hosts", "os-assisted-volume-snapshots"}


class Compute(Service):
    prefix = "/compute"

    def __init__(self):
        self.routes = [
            ("GET", r"/flavors", self.flavor_list),
            ("GET", r"/flavors/detail", self.flavor_detail),
            ("GET", r"/flavors/(?P<fid>[^/]+)", self.flavor_show),
            ("GET", r"/flavors/(?P<fid>[^/]+)/os-extra_specs", self.flavor_extra_specs),
            ("GET", r"/flavors/(?P<fid>[^/]+)/os-extra_specs/(?P<key>[^/]+)", self.flavor_extra_spec),
            ("GET", r"/servers", self.server_list),
            ("GET", r"/servers/detail", self.server_detail),
            ("POST", r"/servers", self.server_create),
            ("GET", r"/servers/(?P<sid>[^/]+)", self.server_show),
            ("PUT", r"/servers/(?P<sid>[^/]+)", self.server_update),
            ("DELETE", r"/servers/(?P<sid>[^/]+)", self.server_delete),
            ("POST", r"/servers/(?P<sid>[^/]+)/action", self.server_action),
            ("GET", r"/servers/(?P<sid>[^/]+)/metadata", self.server_metadata),
            ("GET", r"/servers/(?P<sid>[^/]+)/tags", self.server_tags),
            ("GET", r"/servers/(?P<sid>[^/]+)/os-volume_attachments", self.va_list),
            ("POST", r"/servers/(?P<sid>[^/]+)/os-volume_attachments", self.va_create),
            ("GET", r"/servers/(?P<sid>[^/]+)/os-volume_attachments/(?P<vid>[^/]+)", self.va_show),
            ("DELETE", r"/servers/(?P<sid>[^/]+)/os-volume_attachments/(?P<vid>[^/]+)", self.va_delete),
            ("GET", r"/servers/(?P<sid>[^/]+)/os-interface", self.if_list),
            ("POST", r"/servers/(?P<sid>[^/]+)/os-interface", self.if_create),
            ("GET", r"/servers/(?P<sid>[^/]+)/os-interface/(?P<pid>[^/]+)", self.if_show),
            ("DELETE", r"/servers/(?P<sid>[^/]+)/os-interface/(?P<pid>[^/]+)", self.if_delete),
            ("GET", r"/os-keypairs", self.kp_list),
            ("POST", r"/os-keypairs", self.kp_create),
            ("GET", r"/os-keypairs/(?P<name>[^/]+)", self.kp_show),
            ("DELETE", r"/os-keypairs/(?P<name>[^/]+)", self.kp_delete),
            ("GET", r"/os-server-groups", self.sg_list),
            ("POST", r"/os-server-groups", self.sg_create),
            ("GET", r"/os-server-groups/(?P<gid>[^/]+)", self.sg_show),
            ("DELETE", r"/os-server-groups/(?P<gid>[^/]+)", self.sg_delete),
            ("GET", r"/os-availability-zone", self.az_list),
            ("GET", r"/os-availability-zone/detail", self.az_list),
            ("GET", r"/limits", self.limits),
            ("GET", r"/extensions", self.extensions),
        ]

    def version_doc(self):
        return {"id": "v2.1", "status": "CURRENT", "version": ver_str(MAX_NOVA),
                "min_version": ver_str(MIN_NOVA), "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self", "href": self.url("/v2.1/")},
                          {"rel": "describedby", "type": "text/html",
                           "href": "http://docs.openstack.org/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2.1"}]}

    def microversion(self, req):
        raw = None
        hdr = req.headers.get("OpenStack-API-Version")
        if hdr:
            for part in hdr.split(","):
                bits = part.strip().split()
                if len(bits) == 2 and bits[0].lower() == "compute":
                    raw = bits[1]
        if raw is None:
            raw = req.headers.get("X-OpenStack-Nova-API-Version")
        if raw is None:
            return MIN_NOVA
        if raw.strip().lower() == "latest":
            return MAX_NOVA
        v = ver_tuple(raw)
        if v is None:
            raise ApiError(400, "API Version String %s is of invalid format. Must be of format "
                                "MajorNum.MinorNum." % raw)
        if not (MIN_NOVA <= v <= MAX_NOVA):
            raise ApiError(406, "Version %s is not supported by the API. Minimum is %s and maximum "
                                "is %s." % (raw, ver_str(MIN_NOVA), ver_str(MAX_NOVA)))
        return v

    def handle(self, req, sub):
        if req.method == "GET" and sub in ("", "/"):
            return 200, {"versions": [self.version_doc()]}, {}
        if req.method == "GET" and sub in ("/v2.1", "/v2.1/"):
            return 200, {"version": self.version_doc()}, {}
        if not req.token:
            return 401, UNAUTHORIZED, {}
        if not sub.startswith("/v2.1/"):
            raise Unhandled()
        rest = sub[len("/v2.1"):]
        segs = rest.split("/")
        if len(segs) > 2 and segs[1] not in NOVA_COLLECTIONS:
            req.project = segs[1]
            rest = "/" + "/".join(segs[2:])
        else:
            req.project = CFG.project_id
        try:
            req.version = self.microversion(req)
        except ApiError as e:
            return e.status, self.error_body(e), {}
        vs = ver_str(req.version)
        headers = {"X-OpenStack-Nova-API-Version": vs, "OpenStack-API-Version": "compute " + vs,
                   "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version"}
        fn, args = match_routes(self.routes, req.method, rest.rstrip("/") or "/")
        if fn is None:
            raise Unhandled()
        try:
            status, body = fn(req, **args)
        except ApiError as e:
            return e.status, self.error_body(e), headers
        return status, body, headers

    # ---- flavors --------------------------------------------------------
    def flavor_links(self, fid):
        return [{"rel": "self", "href": self.url("/v2.1/flavors/", fid)},
                {"rel": "bookmark", "href": self.url("/flavors/", fid)}]

    def get_flavor(self, fid, status=404):
        f = STORE.data["flavors"].get(fid)
        if f is None:
            raise ApiError(status, "Flavor %s could not be found." % fid)
        return f

    def flavor_view(self, f, v, detail=True):
        out = {"id": f["id"], "name": f["name"], "links": self.flavor_links(f["id"])}
        if v >= (2, 55):
            out["description"] = f.get("description")
        if not detail:
            return out
        out.update({"ram": f["ram"], "vcpus": f["vcpus"], "disk": f["disk"],
                    "OS-FLV-EXT-DATA:ephemeral": f.get("ephemeral", 0),
                    "OS-FLV-DISABLED:disabled": False,
                    "swap": f.get("swap", 0) if v >= (2, 75) else (f.get("swap") or ""),
                    "rxtx_factor": 1.0, "os-flavor-access:is_public": True})
        if v >= (2, 61):
            out["extra_specs"] = dict(f.get("extra_specs") or {})
        return out

    def flavors_filtered(self, req):
        items = sorted(STORE.data["flavors"].values(), key=lambda f: f["id"])
        min_disk = first_query(req.query, "minDisk")
        min_ram = first_query(req.query, "minRam")
        if min_disk:
            items = [f for f in items if f["disk"] >= int_query(req.query, "minDisk", 0)]
        if min_ram:
            items = [f for f in items if f["ram"] >= int_query(req.query, "minRam", 0)]
        marker = first_query(req.query, "marker")
        if marker:
            ids = [f["id"] for f in items]
            if marker not in ids:
                raise ApiError(400, "marker [%s] not found" % marker)
            items = items[ids.index(marker) + 1:]
        limit = int_query(req.query, "limit", None)
        if limit is not None:
            items = items[:limit]
        return items

    def flavor_list(self, req):
        return 200, {"flavors": [self.flavor_view(f, req.version, False) for f in self.flavors_filtered(req)]}

    def flavor_detail(self, req):
        return 200, {"flavors": [self.flavor_view(f, req.version) for f in self.flavors_filtered(req)]}

    def flavor_show(self, req, fid):
        return 200, {"flavor": self.flavor_view(self.get_flavor(fid), req.version)}

    def flavor_extra_specs(self, req, fid):
        return 200, {"extra_specs": dict(self.get_flavor(fid).get("extra_specs") or {})}

    def flavor_extra_spec(self, req, fid, key):
        specs = self.get_flavor(fid).get("extra_specs") or {}
        if key not in specs:
            raise ApiError(404, "Flavor %s has no extra specs with key %s." % (fid, key))
        return 200, {key: specs[key]}

    # ---- servers: views ---------------------------------------------------
    def get_server(self, sid):
        s = STORE.data["servers"].get(sid)
        if s is None:
            raise ApiError(404, "Instance %s could not be found." % sid)
        return s

    def server_links(self, sid):
        return [{"rel": "self", "href": self.url("/v2.1/servers/", sid)},
                {"rel": "bookmark", "href": self.url("/servers/", sid)}]

    def addresses(self, s):
        out = {}
        for pid in s["ports"]:
            p = STORE.data["ports"].get(pid)
            if p is None:
                continue
            net = STORE.data["networks"].get(p["network_id"], {"name": p["network_id"]})
            for ip in p["fixed_ips"]:
                out.setdefault(net["name"], []).append({
                    "version": ipaddress.ip_address(ip["ip_address"]).version,
                    "addr": ip["ip_address"], "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": p["mac_address"]})
        return out

    def sg_names(self, s):
        names = []
        for pid in s["ports"]:
            p = STORE.data["ports"].get(pid) or {}
            for gid in p.get("security_groups", []):
                g = STORE.data["security_groups"].get(gid)
                if g and g["name"] not in names:
                    names.append(g["name"])
        return [{"name": n} for n in names]

    def server_view(self, s, v):
        f = STORE.data["flavors"].get(s["flavor_id"], {"id": s["flavor_id"], "name": "", "ram": 0,
                                                       "vcpus": 0, "disk": 0})
        if v >= (2, 47):
            flavor = {"vcpus": f["vcpus"], "ram": f["ram"], "disk": f["disk"],
                      "ephemeral": f.get("ephemeral", 0), "swap": f.get("swap", 0),
                      "original_name": f["name"]}
            if v >= (2, 47):
                flavor["extra_specs"] = dict(f.get("extra_specs") or {})
        else:
            flavor = {"id": f["id"], "links": [{"rel": "bookmark", "href": self.url("/flavors/", f["id"])}]}
        image = ""
        if s.get("image_id"):
            image = {"id": s["image_id"], "links": [{"rel": "bookmark",
                                                       "href": self.url("/images/", s["image_id"])}]}
        host_id = hashlib.sha224((s["project_id"] + "standin-host").encode()).hexdigest()
        out = {
            "id": s["id"], "name": s["name"], "status": s["status"], "tenant_id": s["project_id"],
            "user_id": s["user_id"], "metadata": dict(s["metadata"]), "hostId": host_id,
            "image": image, "flavor": flavor, "created": s["created"], "updated": s["updated"],
            "addresses": self.addresses(s), "accessIPv4": "", "accessIPv6": "",
            "links": self.server_links(s["id"]), "OS-DCF:diskConfig": "MANUAL",
            "progress": 100 if s["status"] == "ACTIVE" else 0,
            "OS-EXT-AZ:availability_zone": s["availability_zone"],
            "config_drive": "True" if s.get("config_drive") else "",
            "key_name": s.get("key_name"),
            "OS-SRV-USG:launched_at": s.get("launched_at"), "OS-SRV-USG:terminated_at": None,
            "OS-EXT-SRV-ATTR:host": "standin-host",
            "OS-EXT-SRV-ATTR:instance_name": s["instance_name"],
            "OS-EXT-SRV-ATTR:hypervisor_hostname": "standin-host",
            "OS-EXT-STS:task_state": s.get("task_state"), "OS-EXT-STS:vm_state": s["vm_state"],
            "OS-EXT-STS:power_state": s["power_state"],
            "os-extended-volumes:volumes_attached": [
                dict({"id": b["id"]}, **({"delete_on_termination": b["delete_on_termination"]}
                                          if v >= (2, 3) else {}))
                for b in s["volumes"]],
            "security_groups": self.sg_names(s),
        }
        if v >= (2, 3):
            out.update({"OS-EXT-SRV-ATTR:reservation_id": s["reservation_id"],
                        "OS-EXT-SRV-ATTR:launch_index": 0,
                        "OS-EXT-SRV-ATTR:hostname": s["hostname"],
                        "OS-EXT-SRV-ATTR:kernel_id": "", "OS-EXT-SRV-ATTR:ramdisk_id": "",
                        "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
                        "OS-EXT-SRV-ATTR:user_data": s.get("user_data")})
        if v >= (2, 9):
            out["locked"] = False
        if v >= (2, 16):
            out["host_status"] = "UP"
        if v >= (2, 19):
            out["description"] = s.get("description")
        if v >= (2, 26):
            out["tags"] = list(s.get("tags", []))
        if v >= (2, 63):
            out["trusted_image_certificates"] = None
        if v >= (2, 71):
            out["server_groups"] = [g["id"] for g in STORE.data["server_groups"].values()
                                    if s["id"] in g["members"]]
        if v >= (2, 73):
            out["locked_reason"] = None
        if v >= (2, 96):
            out["pinned_availability_zone"] = None
        if s.get("fault") and s["status"] in ("ERROR", "DELETED"):
            out["fault"] = dict(s["fault"])
        return out

    def servers_filtered(self, req):
        q = req.query
        # Nova's default order: created_at descending
        items = sorted(STORE.data["servers"].values(), key=lambda s: (s["created"], s["id"]), reverse=True)
        if "name" in q:
            rx = re.compile(q["name"][0])
            items = [s for s in items if rx.search(s["name"])]
        if "status" in q:
            wanted = {x.upper() for x in q["status"]}
            items = [s for s in items if s["status"] in wanted]
        if "tags" in q:
            need = set(",".join(q["tags"]).split(","))
            items = [s for s in items if need <= set(s.get("tags", []))]
        if "tags-any" in q:
            anyof = set(",".join(q["tags-any"]).split(","))
            items = [s for s in items if anyof & set(s.get("tags", []))]
        if "not-tags" in q:
            need = set(",".join(q["not-tags"]).split(","))
            items = [s for s in items if not need <= set(s.get("tags", []))]
        if "not-tags-any" in q:
            anyof = set(",".join(q["not-tags-any"]).split(","))
            items = [s for s in items if not anyof & set(s.get("tags", []))]
        for key in ("image", "flavor"):
            if key in q:
                items = [s for s in items if s.get(key + "_id") == q[key][0]]
        if "ip" in q:
            rx = re.compile(q["ip"][0])
            items = [s for s in items if any(rx.search(a["addr"]) for lst in self.addresses(s).values()
                                             for a in lst)]
        marker = first_query(q, "marker")
        if marker:
            ids = [s["id"] for s in items]
            if marker not in ids:
                raise ApiError(400, "marker [%s] not found" % marker)
            items = items[ids.index(marker) + 1:]
        limit = int_query(q, "limit", 1000)
        return items[:max(0, min(limit, 1000))]

    def server_list(self, req):
        with STORE.lock:
            return 200, {"servers": [{"id": s["id"], "name": s["name"], "links": self.server_links(s["id"])}
                                     for s in self.servers_filtered(req)]}

    def server_detail(self, req):
        with STORE.lock:
            return 200, {"servers": [self.server_view(s, req.version) for s in self.servers_filtered(req)]}

    def server_show(self, req, sid):
        with STORE.lock:
            return 200, {"server": self.server_view(self.get_server(sid), req.version)}

    def server_metadata(self, req, sid):
        with STORE.lock:
            return 200, {"metadata": dict(self.get_server(sid)["metadata"])}

    def server_tags(self, req, sid):
        with STORE.lock:
            return 200, {"tags": list(self.get_server(sid).get("tags", []))}

    def server_update(self, req, sid):
        body = json_body(req, "server")
        with STORE.lock:
            s = self.get_server(sid)
            for k in ("name", "description"):
                if k in body:
                    s[k] = body[k]
            s["updated"] = ts()
            STORE.save()
            return 200, {"server": self.server_view(s, req.version)}

    # ---- servers: create ------------------------------------------------------
    def server_create(self, req):
        body = json_body(req, "server")
        v = req.version
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "Invalid input for field/attribute name.")
        if "personality" in body and v >= (2, 57):
            raise ApiError(400, "Invalid input for field/attribute server. Value: %s. Additional "
                                "properties are not allowed ('personality' was unexpected)" % "...")
        if int(body.get("min_count", 1)) != 1 or int(body.get("max_count", 1)) != 1:
            raise ApiError(400, "stand-in: only min_count = max_count = 1 is supported")
        with STORE.lock:
            flavor_id = str(body.get("flavorRef", "")).rstrip("/").split("/")[-1]
            flavor = self.get_flavor(flavor_id, status=400)
            image_id = str(body.get("imageRef") or "").rstrip("/").split("/")[-1]
            bdms = body.get("block_device_mapping_v2") or []
            if not isinstance(bdms, list):
                raise ApiError(400, "Invalid input for field/attribute block_device_mapping_v2.")
            volumes = []
            boot_from_volume = False
            used_devices = {"/dev/vda"}
            for b in bdms:
                src, dst = b.get("source_type"), b.get("destination_type", "volume")
                if src == "image" and dst == "local":
                    image_id = image_id or b.get("uuid", "")
                    continue
                if src == "volume" and dst == "volume":
                    vol = STORE.data["volumes"].get(b.get("uuid") or "")
                    if vol is None:
                        raise ApiError(400, "Block Device Mapping is Invalid: failed to get volume %s."
                                       % b.get("uuid"))
                    if vol["status"] != "available":
                        raise ApiError(400, "Invalid volume: volume %s status must be 'available', "
                                            "but current status is: %s" % (vol["id"], vol["status"]))
                    boot = str(b.get("boot_index", "")) == "0"
                    boot_from_volume = boot_from_volume or boot
                    dev = b.get("device_name")
                    dev = "/dev/vda" if boot else ("/dev/" + dev.split("/")[-1] if dev else None)
                    volumes.append({"id": vol["id"], "device": dev, "boot_index": 0 if boot else None,
                                    "delete_on_termination": parse_bool(b.get("delete_on_termination", False))})
                    continue
                raise ApiError(400, "stand-in: block device mapping source_type=%s destination_type=%s is "
                                    "not supported" % (src, dst))
            for vol in volumes:
                if vol["device"] in (None, ) or (vol["device"] in used_devices and vol["boot_index"] != 0):
                    vol["device"] = next("/dev/vd%s" % c for c in "bcdefghijklmnop"
                                         if "/dev/vd%s" % c not in used_devices)
                used_devices.add(vol["device"])
            if image_id:
                if image_id not in STORE.data["images"]:
                    raise ApiError(400, "Image %s could not be found." % image_id)
            elif not boot_from_volume:
                raise ApiError(400, "Block Device Mapping is Invalid: Boot sequence for the instance and "
                                    "image/block device mapping combination is not valid.")
            key_name = body.get("key_name")
            if key_name and key_name not in STORE.data["keypairs"]:
                raise ApiError(400, "Invalid key_name provided.")
            az = body.get("availability_zone")
            if az and az.split(":")[0] not in ("nova", ""):
                raise ApiError(400, "The requested availability zone is not available")
            # networks
            networks = body.get("networks")
            if networks is None and v >= (2, 37):
                raise ApiError(400, "Invalid input for field/attribute server. Value: ... "
                                    "'networks' is a required property")
            plan = []   # ("port", port_id) | ("net", network_id, fixed_ip)
            if networks is None or networks == "auto":
                plan.append(("net", CFG.network_id, None))
            elif networks == "none":
                pass
            elif isinstance(networks, list):
                for n in networks:
                    if n.get("port"):
                        p = STORE.data["ports"].get(n["port"])
                        if p is None:
                            raise ApiError(400, "Port id %s could not be found." % n["port"])
                        if p.get("device_id"):
                            raise ApiError(409, "Port %s is still in use." % n["port"])
                        plan.append(("port", p["id"]))
                    elif n.get("uuid"):
                        if n["uuid"] not in STORE.data["networks"]:
                            raise ApiError(400, "Network %s could not be found." % n["uuid"])
                        plan.append(("net", n["uuid"], n.get("fixed_ip")))
                    else:
                        raise ApiError(400, "Bad networks format: network uuid is not in proper format")
            else:
                raise ApiError(400, "Invalid input for field/attribute networks.")
            # user data / personality
            user_data = body.get("user_data")
            user_data_raw = b""
            if user_data:
                if len(user_data) > 65535:
                    raise ApiError(400, "Invalid input for field/attribute user_data. Value: ... is too long")
                try:
                    user_data_raw = base64.b64decode(user_data, validate=True)
                except (binascii.Error, ValueError, TypeError):
                    raise ApiError(400, "Invalid input for field/attribute user_data. Value: ... is not a "
                                        "valid base64 string")
            personality = []
            for pf in body.get("personality") or []:
                try:
                    personality.append({"path": pf["path"], "content": base64.b64decode(pf["contents"]),
                                        "owner": None, "permissions": None, "append": False})
                except (KeyError, binascii.Error, ValueError, TypeError):
                    raise ApiError(400, "Personality content could not be decoded.")
            metadata = body.get("metadata") or {}
            if not isinstance(metadata, dict) or not all(isinstance(x, str) for x in
                                                          list(metadata) + list(metadata.values())):
                raise ApiError(400, "Invalid input for field/attribute metadata.")
            hints = (req.body.get("os:scheduler_hints") or req.body.get("OS-SCH-HNT:scheduler_hints") or {})
            group = None
            if hints.get("group"):
                group = STORE.data["server_groups"].get(hints["group"])
                if group is None:
                    raise ApiError(400, "Invalid server group %s" % hints["group"])
            # all valid: record
            sid = str(uuid.uuid4())
            now = ts()
            created_ports = []
            ports = []
            for item in plan:
                if item[0] == "port":
                    ports.append(item[1])
                else:
                    fixed = [{"ip_address": item[2]}] if item[2] else None
                    try:
                        p = NETWORK.make_port(item[1], fixed, None, req.project, name="",
                                              description="")
                    except ApiError as e:
                        for pid in created_ports:
                            STORE.data["ports"].pop(pid, None)
                        raise ApiError(400 if e.status == 404 else e.status, e.message)
                    created_ports.append(p["id"])
                    ports.append(p["id"])
            for pid in ports:
                p = STORE.data["ports"][pid]
                p.update(device_id=sid, device_owner="compute:" + (az or "nova"),
                         **{"binding:host_id": "standin-host", "updated_at": now})
            for vol in volumes:
                att_id = str(uuid.uuid4())
                vol["attachment_id"] = att_id
                VOLUME.attach(vol["id"], sid, vol["device"], att_id)
            index = len(STORE.data["servers"]) + 1
            s = {"id": sid, "name": name, "project_id": req.project,
                 "user_id": CFG.user_id,
                 "flavor_id": flavor["id"], "image_id": image_id, "status": "BUILD",
                 "vm_state": "building", "task_state": "scheduling", "power_state": 0,
                 "created": now, "updated": now, "launched_at": None, "metadata": dict(metadata),
                 "tags": list(body.get("tags") or []), "key_name": key_name,
                 "config_drive": parse_bool(body.get("config_drive")) if body.get("config_drive") else False,
                 "user_data": user_data or None, "availability_zone": az or "nova",
                 "ports": ports, "created_ports": created_ports, "volumes": volumes,
                 "description": body.get("description"), "fault": None,
                 "instance_name": "instance-%08x" % (int(time.time() * 1000) % 0xffffffff + index),
                 "reservation_id": "r-" + secrets.token_hex(4),
                 "hostname": re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "server",
                 "scheduler_hints": hints, "security_groups_requested":
                     [g.get("name") for g in body.get("security_groups") or []]}
            STORE.data["servers"][sid] = s
            if group is not None:
                group["members"].append(sid)
            STORE.save()
        threading.Thread(target=self.build, args=(sid, user_data_raw, personality), daemon=True).start()
        resp = {"id": sid, "links": self.server_links(sid), "OS-DCF:diskConfig": "MANUAL",
                "security_groups": [{"name": "default"}], "adminPass": secrets.token_urlsafe(9)}
        return 202, {"server": resp}

    def write_meta(self, sid):
        with STORE.lock:
            s = STORE.data["servers"].get(sid)
            if s is None:
                return
            gdir = guest_dir(sid)
            nets = []
            ips = []
            for pid in s["ports"]:
                p = STORE.data["ports"].get(pid)
                if p is None:
                    continue
                net = STORE.data["networks"].get(p["network_id"], {})
                for ip in p["fixed_ips"]:
                    sub = STORE.data["subnets"].get(ip["subnet_id"], {})
                    ips.append(ip["ip_address"])
                    nets.append({"port_id": pid, "network_id": p["network_id"],
                                 "network_name": net.get("name"), "subnet_id": ip["subnet_id"],
                                 "ip": ip["ip_address"], "cidr": sub.get("cidr"),
                                 "prefixlen": ipaddress.ip_network(sub["cidr"]).prefixlen if sub else None,
                                 "gateway": sub.get("gateway_ip"), "mac": p["mac_address"],
                                 "security_groups": list(p["security_groups"])})
            flavor = STORE.data["flavors"].get(s["flavor_id"], {})
            meta = {"server_id": sid, "name": s["name"], "hostname": s["hostname"], "ips": ips,
                    "networks": nets,
                    "volumes": [{"id": b["id"], "file": volume_file(b["id"]), "device": b["device"],
                                 "size_gib": STORE.data["volumes"].get(b["id"], {}).get("size"),
                                 "boot": b.get("boot_index") == 0} for b in s["volumes"]],
                    "metadata": dict(s["metadata"]), "tags": list(s.get("tags", [])),
                    "flavor": {"id": flavor.get("id"), "name": flavor.get("name"),
                               "vcpus": flavor.get("vcpus"), "ram_mb": flavor.get("ram"),
                               "disk_gib": flavor.get("disk")},
                    "image_id": s.get("image_id") or None, "config_drive": s.get("config_drive"),
                    "key_name": s.get("key_name"),
                    "public_key": (STORE.data["keypairs"].get(s.get("key_name") or "") or {}).get("public_key"),
                    "files": s.get("files", []), "user_data_file": os.path.join(gdir, "user-data")
                    if s.get("user_data") else None}
        tmp = os.path.join(gdir, "meta.json.%d.tmp" % threading.get_ident())
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(gdir, "meta.json"))

    def build(self, sid, user_data_raw, personality):
        lock = STORE.op_lock(sid)
        with lock:
            try:
                err = self.prepare_guest_dir(sid, user_data_raw, personality)
            except Exception as e:   # a stand-in bug: make it visible as a fault
                traceback.print_exc()
                err = "stand-in failed to prepare the guest directory: %s" % e
            with STORE.lock:
                s = STORE.data["servers"].get(sid)
                if s is None or s.get("task_state") == "deleting":
                    return
                if err:
                    log("server %s: %s" % (sid, err))
                    s.update(status="ERROR", vm_state="error", task_state=None, fault=fault(err),
                             updated=ts())
                    STORE.save()
                    return
                s.update(task_state="spawning", updated=ts())
                STORE.save()
            rc, last = run_hypervisor("up", sid, guest_dir(sid))
            with STORE.lock:
                s = STORE.data["servers"].get(sid)
                if s is None:
                    return
                if rc == 0:
                    s.update(status="ACTIVE", vm_state="active", power_state=1, launched_at=ts(),
                             updated=ts())
                    for pid in s["ports"]:
                        if pid in STORE.data["ports"]:
                            STORE.data["ports"][pid]["status"] = "ACTIVE"
                else:
                    s.update(status="ERROR", vm_state="error", power_state=0, updated=ts(),
                             fault=fault(last or "hypervisor up failed"))
                if s.get("task_state") != "deleting":
                    s["task_state"] = None
                STORE.save()

    def prepare_guest_dir(self, sid, user_data_raw, personality):
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
        with STORE.lock:
            s = STORE.data["servers"].get(sid)
            if s is None:
                return None
            s["files"] = written
            STORE.save()
        self.write_meta(sid)
        log("server %s: guest dir %s (%d files)" % (sid, gdir, len(written)))
        return None

    # ---- servers: actions -------------------------------------------------------
    def server_action(self, req, sid):
        if not isinstance(req.body, dict) or len(req.body) != 1:
            raise ApiError(400, "Invalid action body")
        action, arg = next(iter(req.body.items()))
        with STORE.lock:
            s = self.get_server(sid)
            if action != "reboot":
                raise Unhandled("server action %r" % action)
            rtype = str((arg or {}).get("type", "SOFT")).upper()
            if rtype not in ("SOFT", "HARD"):
                raise ApiError(400, "Invalid input for field/attribute type.")
            busy = s.get("task_state")
            allowed = ("ACTIVE",) if rtype == "SOFT" else ("ACTIVE", "ERROR", "SHUTOFF", "REBOOT")
            if busy or s["status"] not in allowed:
                raise ApiError(409, "Cannot 'reboot' instance %s while it is in %s %s" % (
                    sid, "task_state" if busy else "vm_state", busy or s["vm_state"]))
            s.update(status="REBOOT" if rtype == "SOFT" else "HARD_REBOOT",
                     task_state="reboot_started" if rtype == "SOFT" else "reboot_started_hard",
                     updated=ts())
            STORE.save()
        threading.Thread(target=self.reboot, args=(sid,), daemon=True).start()
        return 202, None

    def reboot(self, sid):
        with STORE.op_lock(sid):
            with STORE.lock:
                if sid not in STORE.data["servers"]:
                    return
            self.write_meta(sid)
            rc, last = run_hypervisor("reboot", sid, guest_dir(sid))
            with STORE.lock:
                s = STORE.data["servers"].get(sid)
                if s is None:
                    return
                if rc == 0:
                    s.update(status="ACTIVE", vm_state="active", power_state=1, fault=None)
                else:
                    s.update(status="ERROR", vm_state="error", power_state=0,
                             fault=fault(last or "hypervisor reboot failed"))
                if s.get("task_state") != "deleting":
                    s["task_state"] = None
                s["updated"] = ts()
                STORE.save()

    def server_delete(self, req, sid):
        with STORE.lock:
            s = self.get_server(sid)
            if s.get("task_state") == "deleting":
                return 204, None
            s.update(task_state="deleting", updated=ts())
            STORE.save()
        threading.Thread(target=self.delete, args=(sid,), daemon=True).start()
        return 204, None

    def delete(self, sid):
        # Waits for a running build or reboot (each bounded by the timeout).
        with STORE.op_lock(sid):
            rc, last = run_hypervisor("down", sid, guest_dir(sid))
            with STORE.lock:
                s = STORE.data["servers"].get(sid)
                if s is None:
                    return
                if rc != 0:
                    s.update(status="ERROR", vm_state="error", task_state=None, updated=ts(),
                             fault=fault(last or "hypervisor down failed"))
                    STORE.save()
                    return
                for pid in s["ports"]:
                    p = STORE.data["ports"].get(pid)
                    if p is None:
                        continue
                    if pid in s["created_ports"]:
                        del STORE.data["ports"][pid]
                    else:
                        p.update(device_id="", device_owner="", status="DOWN", updated_at=ts(),
                                 **{"binding:host_id": ""})
                for b in s["volumes"]:
                    VOLUME.detach(b["id"], sid)
                    if b.get("delete_on_termination"):
                        VOLUME.remove(b["id"])
                for g in STORE.data["server_groups"].values():
                    if sid in g["members"]:
                        g["members"].remove(sid)
                del STORE.data["servers"][sid]
                STORE.op_locks.pop(sid, None)
                STORE.save()
        log("server %s deleted" % sid)

    # ---- volume attachments ---------------------------------------------------
    def va_view(self, sid, b, v):
        out = {"id": b["id"], "volumeId": b["id"], "serverId": sid, "device": b["device"]}
        if v >= (2, 70):
            out["tag"] = None
        if v >= (2, 79):
            out["delete_on_termination"] = b.get("delete_on_termination", False)
        if v >= (2, 89):
            out["attachment_id"] = b.get("attachment_id")
            out["bdm_uuid"] = stable_id("bdm", sid + b["id"])
            del out["id"]
        return out

    def va_list(self, req, sid):
        with STORE.lock:
            s = self.get_server(sid)
            return 200, {"volumeAttachments": [self.va_view(sid, b, req.version) for b in s["volumes"]]}

    def va_show(self, req, sid, vid):
        with STORE.lock:
            s = self.get_server(sid)
            for b in s["volumes"]:
                if b["id"] == vid:
                    return 200, {"volumeAttachment": self.va_view(sid, b, req.version)}
            raise ApiError(404, "Instance %s is not attached." % vid)

    def va_create(self, req, sid):
        body = json_body(req, "volumeAttachment")
        with STORE.lock:
            s = self.get_server(sid)
            if s.get("task_state") or s["status"] not in ("ACTIVE", "SHUTOFF"):
                raise ApiError(409, "Cannot 'attach_volume' instance %s while it is in vm_state %s"
                               % (sid, s["vm_state"]))
            vol = STORE.data["volumes"].get(body.get("volumeId") or "")
            if vol is None:
                raise ApiError(404, "Volume %s could not be found." % body.get("volumeId"))
            if vol["status"] != "available":
                raise ApiError(400, "Invalid volume: volume %s status must be 'available', but current "
                                    "status is: %s" % (vol["id"], vol["status"]))
            used = {b["device"] for b in s["volumes"]} | {"/dev/vda"}
            dev = body.get("device")
            dev = "/dev/" + dev.split("/")[-1] if dev else None
            if not dev or dev in used:
                dev = next("/dev/vd%s" % c for c in "bcdefghijklmnop" if "/dev/vd%s" % c not in used)
            b = {"id": vol["id"], "device": dev, "boot_index": None,
                 "delete_on_termination": parse_bool(body.get("delete_on_termination", False)),
                 "attachment_id": str(uuid.uuid4())}
            VOLUME.attach(vol["id"], sid, dev, b["attachment_id"])
            s["volumes"].append(b)
            s["updated"] = ts()
            STORE.save()
            view = self.va_view(sid, b, req.version)
        self.write_meta(sid)
        log("server %s: volume %s attached at %s (the hypervisor is not told; see meta.json)"
            % (sid, vol["id"], dev))
        return 200, {"volumeAttachment": view}

    def va_delete(self, req, sid, vid):
        with STORE.lock:
            s = self.get_server(sid)
            match = [b for b in s["volumes"] if b["id"] == vid]
            if not match:
                raise ApiError(404, "Volume %s is not attached to %s." % (vid, sid))
            if match[0].get("boot_index") == 0:
                raise ApiError(400, "Cannot detach a root device volume")
            s["volumes"] = [b for b in s["volumes"] if b["id"] != vid]
            VOLUME.detach(vid, sid)
            s["updated"] = ts()
            STORE.save()
        self.write_meta(sid)
        return 202, None

    # ---- interfaces -------------------------------------------------------------
    def if_view(self, p):
        return {"port_state": p["status"], "port_id": p["id"], "net_id": p["network_id"],
                "mac_addr": p["mac_address"],
                "fixed_ips": [{"subnet_id": i["subnet_id"], "ip_address": i["ip_address"]}
                              for i in p["fixed_ips"]]}

    def if_list(self, req, sid):
        with STORE.lock:
            s = self.get_server(sid)
            return 200, {"interfaceAttachments": [self.if_view(STORE.data["ports"][p]) for p in s["ports"]
                                                  if p in STORE.data["ports"]]}

    def if_show(self, req, sid, pid):
        with STORE.lock:
            s = self.get_server(sid)
            if pid not in s["ports"] or pid not in STORE.data["ports"]:
                raise ApiError(404, "Port %s is not attached" % pid)
            return 200, {"interfaceAttachment": self.if_view(STORE.data["ports"][pid])}

    def if_create(self, req, sid):
        body = json_body(req, "interfaceAttachment")
        with STORE.lock:
            s = self.get_server(sid)
            if body.get("port_id"):
                p = STORE.data["ports"].get(body["port_id"])
                if p is None:
                    raise ApiError(404, "Port %s could not be found." % body["port_id"])
                if p.get("device_id"):
                    raise ApiError(409, "Port %s is still in use." % p["id"])
            elif body.get("net_id"):
                fixed = [{"ip_address": i["ip_address"]} for i in body.get("fixed_ips") or []] or None
                p = NETWORK.make_port(body["net_id"], fixed, None, req.project, name="", description="")
                s["created_ports"].append(p["id"])
            else:
                p = NETWORK.make_port(CFG.network_id, None, None, req.project, name="", description="")
                s["created_ports"].append(p["id"])
            p.update(device_id=sid, device_owner="compute:nova",
                     status="ACTIVE" if s["status"] == "ACTIVE" else "DOWN",
                     **{"binding:host_id": "standin-host"})
            s["ports"].append(p["id"])
            STORE.save()
            view = self.if_view(p)
        self.write_meta(sid)
        return 200, {"interfaceAttachment": view}

    def if_delete(self, req, sid, pid):
        with STORE.lock:
            s = self.get_server(sid)
            if pid not in s["ports"]:
                raise ApiError(404, "Port %s is not attached" % pid)
            s["ports"].remove(pid)
            if pid in s["created_ports"]:
                STORE.data["ports"].pop(pid, None)
            elif pid in STORE.data["ports"]:
                STORE.data["ports"][pid].update(device_id="", device_owner="", status="DOWN")
            STORE.save()
        self.write_meta(sid)
        return 202, None

    # ---- keypairs, server groups, misc ------------------------------------------
    def kp_view(self, k, v, detail=True):
        out = {"name": k["name"], "public_key": k["public_key"], "fingerprint": k["fingerprint"]}
        if v >= (2, 2):
            out["type"] = k.get("type", "ssh")
        if detail:
            out.update({"user_id": k["user_id"], "created_at": k["created_at"], "deleted": False,
                        "deleted_at": None, "updated_at": None, "id": k["id"]})
        return out

    def kp_list(self, req):
        with STORE.lock:
            return 200, {"keypairs": [{"keypair": self.kp_view(k, req.version, False)}
                                      for k in STORE.data["keypairs"].values()]}

    def kp_show(self, req, name):
        with STORE.lock:
            k = STORE.data["keypairs"].get(name)
            if k is None:
                raise ApiError(404, "Keypair %s not found for user %s" % (name, CFG.user_id))
            return 200, {"keypair": self.kp_view(k, req.version)}

    def kp_create(self, req):
        body = json_body(req, "keypair")
        name = body.get("name")
        if not name:
            raise ApiError(400, "Invalid input for field/attribute name.")
        if not body.get("public_key"):
            raise ApiError(400, "stand-in: only importing a public_key is supported")
        parts = body["public_key"].split()
        try:
            blob = base64.b64decode(parts[1])
        except (IndexError, binascii.Error, ValueError):
            raise ApiError(400, "Keypair data is invalid: failed to generate fingerprint")
        fp = ":".join("%02x" % b for b in hashlib.md5(blob).digest())
        with STORE.lock:
            if name in STORE.data["keypairs"]:
                raise ApiError(409, "Key pair '%s' already exists." % name)
            k = {"id": len(STORE.data["keypairs"]) + 1, "name": name, "public_key": body["public_key"],
                 "fingerprint": fp, "type": body.get("type", "ssh"), "user_id": CFG.user_id,
                 "created_at": ts()}
            STORE.data["keypairs"][name] = k
            STORE.save()
            return (201 if req.version >= (2, 2) else 200), {"keypair": self.kp_view(k, req.version, False)}

    def kp_delete(self, req, name):
        with STORE.lock:
            if STORE.data["keypairs"].pop(name, None) is None:
                raise ApiError(404, "Keypair %s not found for user %s" % (name, CFG.user_id))
            STORE.save()
        return (204 if req.version >= (2, 2) else 202), None

    def sg_view(self, g, v):
        out = {"id": g["id"], "name": g["name"], "members": list(g["members"]), "metadata": {},
               "project_id": g["project_id"], "user_id": g["user_id"]}
        if v >= (2, 64):
            out["policy"] = g["policies"][0]
            out["rules"] = g.get("rules", {})
            del out["metadata"]
        else:
            out["policies"] = list(g["policies"])
        return out

    def sg_list(self, req):
        with STORE.lock:
            return 200, {"server_groups": [self.sg_view(g, req.version)
                                           for g in STORE.data["server_groups"].values()]}

    def sg_show(self, req, gid):
        with STORE.lock:
            g = STORE.data["server_groups"].get(gid)
            if g is None:
                raise ApiError(404, "Server group %s could not be found." % gid)
            return 200, {"server_group": self.sg_view(g, req.version)}

    def sg_create(self, req):
        body = json_body(req, "server_group")
        policies = body.get("policies") or ([body["policy"]] if body.get("policy") else [])
        allowed = {"affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"}
        if not body.get("name") or len(policies) != 1 or policies[0] not in allowed:
            raise ApiError(400, "Invalid input for field/attribute policies.")
        with STORE.lock:
            g = {"id": str(uuid.uuid4()), "name": body["name"], "policies": policies, "members": [],
                 "rules": body.get("rules") or {}, "project_id": req.project, "user_id": CFG.user_id}
            STORE.data["server_groups"][g["id"]] = g
            STORE.save()
            return 200, {"server_group": self.sg_view(g, req.version)}

    def sg_delete(self, req, gid):
        with STORE.lock:
            if STORE.data["server_groups"].pop(gid, None) is None:
                raise ApiError(404, "Server group %s could not be found." % gid)
            STORE.save()
        return 204, None

    def az_list(self, req):
        return 200, {"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": True},
                                               "hosts": None}]}

    def limits(self, req):
        with STORE.lock:
            servers = list(STORE.data["servers"].values())
            fl = STORE.data["flavors"]
            cores = sum(fl.get(s["flavor_id"], {}).get("vcpus", 0) for s in servers)
            ram = sum(fl.get(s["flavor_id"], {}).get("ram", 0) for s in servers)
            absolute = {"maxTotalInstances": 100, "maxTotalCores": 200, "maxTotalRAMSize": 512000,
                        "maxServerMeta": 128, "maxImageMeta": 128, "maxPersonality": 5,
                        "maxPersonalitySize": 10240, "maxTotalKeypairs": 100, "maxServerGroups": 10,
                        "maxServerGroupMembers": 10, "totalInstancesUsed": len(servers),
                        "totalCoresUsed": cores, "totalRAMUsed": ram,
                        "totalServerGroupsUsed": len(STORE.data["server_groups"])}
            return 200, {"limits": {"rate": [], "absolute": absolute}}

    def extensions(self, req):
        return 200, {"extensions": []}


# --------------------------------------------------------------------------
# Block storage
# --------------------------------------------------------------------------

CINDER_COLLECTIONS = {"volumes", "types", "limits", "os-availability-zone", "os-quota-sets",
                      "extensions", "snapshots", "backups", "attachments", "messages", "groups",
                      "group_types", "qos-specs", "os-volume-transfer", "volume-transfers",
                      "scheduler-stats", "os-services", "workers", "manageable_volumes",
                      "resource_filters", "clusters", "default-types"}


class Volume(Service):
    prefix = "/volume"

    def __init__(self):
        self.routes = [
            ("GET", r"/volumes", self.vol_list),
            ("GET", r"/volumes/detail", self.vol_detail),
            ("POST", r"/volumes", self.vol_create),
            ("GET", r"/volumes/(?P<vid>[^/]+)", self.vol_show),
            ("PUT", r"/volumes/(?P<vid>[^/]+)", self.vol_update),
            ("DELETE", r"/volumes/(?P<vid>[^/]+)", self.vol_delete),
            ("POST", r"/volumes/(?P<vid>[^/]+)/action", self.vol_action),
            ("GET", r"/types", self.type_list),
            ("GET", r"/types/default", self.type_default),
            ("GET", r"/types/(?P<tid>[^/]+)", self.type_show),
            ("GET", r"/types/(?P<tid>[^/]+)/extra_specs", self.type_extra_specs),
            ("GET", r"/limits", self.limits),
            ("GET", r"/os-availability-zone", self.az_list),
            ("GET", r"/os-quota-sets/(?P<pid>[^/]+)", self.quotas),
            ("GET", r"/extensions", self.extensions),
            ("GET", r"/snapshots", self.empty("snapshots")),
            ("GET", r"/snapshots/detail", self.empty("snapshots")),
            ("GET", r"/backups", self.empty("backups")),
            ("GET", r"/backups/detail", self.empty("backups")),
        ]

    def empty(self, key):
        return lambda req: (200, {key: []})

    def version_doc(self):
        return {"id": "v3.0", "status": "CURRENT", "version": ver_str(MAX_CINDER),
                "min_version": "3.0", "updated": "2023-08-31T00:00:00Z",
                "links": [{"rel": "describedby", "type": "text/html",
                           "href": "https://docs.openstack.org/"},
                          {"rel": "self", "href": self.url("/v3/")}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.volume+json;version=3"}]}

    def handle(self, req, sub):
        if req.method == "GET" and sub in ("", "/", "/v3", "/v3/"):
            return (300 if sub in ("", "/") else 200), {"versions": [self.version_doc()]}, {}
        if not req.token:
            return 401, UNAUTHORIZED, {}
        if not sub.startswith("/v3/"):
            raise Unhandled()
        rest = sub[len("/v3"):]
        segs = rest.split("/")
        if len(segs) > 2 and segs[1] not in CINDER_COLLECTIONS:
            req.project = segs[1]
            rest = "/" + "/".join(segs[2:])
        else:
            req.project = CFG.project_id
        # OpenStack-API-Version: volume X.Y (cinder ignores other service
        # names, e.g. the "volumev3 latest" Trove's admin client sends).
        req.version = (3, 0)
        for part in (req.headers.get("OpenStack-API-Version") or "").split(","):
            bits = part.strip().split()
            if len(bits) == 2 and bits[0].lower() == "volume":
                v = MAX_CINDER if bits[1].lower() == "latest" else ver_tuple(bits[1])
                if v is None or not ((3, 0) <= v <= MAX_CINDER):
                    e = ApiError(406, "Version %s is not supported by the API. Minimum is 3.0 and "
                                      "maximum is %s." % (bits[1], ver_str(MAX_CINDER)))
                    return e.status, self.error_body(e), {}
                req.version = v
        headers = {"OpenStack-API-Version": "volume " + ver_str(req.version),
                   "Vary": "OpenStack-API-Version"}
        fn, args = match_routes(self.routes, req.method, rest.rstrip("/") or "/")
        if fn is None:
            raise Unhandled()
        try:
            status, body = fn(req, **args)
        except ApiError as e:
            return e.status, self.error_body(e), headers
        return status, body, headers

    def get_volume(self, vid):
        v = STORE.data["volumes"].get(vid)
        if v is None:
            raise ApiError(404, "Volume %s could not be found." % vid)
        return v

    def links(self, vid, project):
        return [{"rel": "self", "href": self.url("/v3/", project, "/volumes/", vid)},
                {"rel": "bookmark", "href": self.url("/", project, "/volumes/", vid)}]

    def vol_view(self, v, req, detail=True):
        out = {"id": v["id"], "name": v["name"], "links": self.links(v["id"], v["project_id"])}
        if not detail:
            return out
        vt = STORE.data["volume_types"].get(v["volume_type_id"], {})
        out.update({
            "status": v["status"], "size": v["size"], "availability_zone": v["availability_zone"],
            "created_at": v["created_at"], "updated_at": v["updated_at"],
            "attachments": [dict(a) for a in v["attachments"]], "description": v["description"],
            "volume_type": vt.get("name"), "snapshot_id": None, "source_volid": None,
            "metadata": dict(v["metadata"]), "user_id": v["user_id"], "bootable": v["bootable"],
            "encrypted": False, "replication_status": None, "consistencygroup_id": None,
            "multiattach": False, "migration_status": None,
            "os-vol-tenant-attr:tenant_id": v["project_id"],
            "os-vol-host-attr:host": "standin@file#standin",
            "os-vol-mig-status-attr:migstat": None, "os-vol-mig-status-attr:name_id": None,
        })
        if v.get("image_id"):
            out["volume_image_metadata"] = {"image_id": v["image_id"],
                                            "image_name": STORE.data["images"].get(v["image_id"], {}).get("name")}
        ver = req.version
        if ver >= (3, 13):
            out["group_id"] = None
        if ver >= (3, 21):
            out["provider_id"] = None
        if ver >= (3, 48):
            out["service_uuid"] = stable_id("cinder-volume", "standin")
            out["shared_targets"] = False
        if ver >= (3, 61):
            out["cluster_name"] = None
        if ver >= (3, 63):
            out["volume_type_id"] = v["volume_type_id"]
        if ver >= (3, 64):
            out["encryption_key_id"] = None
        if ver >= (3, 65):
            out["consumes_quota"] = True
        return out

    def filtered(self, req):
        q = req.query
        items = sorted(STORE.data["volumes"].values(), key=lambda v: (v["created_at"], v["id"]))
        for key in ("name", "status", "bootable"):
            if key in q:
                items = [v for v in items if str(v.get(key)) == q[key][0]]
        if "metadata" in q:
            try:
                want = json.loads(q["metadata"][0].replace("'", '"'))
            except ValueError:
                raise ApiError(400, "Invalid filter metadata")
            items = [v for v in items if all(v["metadata"].get(k) == x for k, x in want.items())]
        marker = first_query(q, "marker")
        if marker:
            ids = [v["id"] for v in items]
            if marker not in ids:
                raise ApiError(404, "Marker %s could not be found." % marker)
            items = items[ids.index(marker) + 1:]
        limit = int_query(q, "limit", None)
        if limit is not None:
            items = items[:limit]
        return items

    def vol_list(self, req):
        with STORE.lock:
            return 200, {"volumes": [self.vol_view(v, req, False) for v in self.filtered(req)]}

    def vol_detail(self, req):
        with STORE.lock:
            return 200, {"volumes": [self.vol_view(v, req) for v in self.filtered(req)]}

    def vol_show(self, req, vid):
        with STORE.lock:
            return 200, {"volume": self.vol_view(self.get_volume(vid), req)}

    def find_type(self, ref):
        types = STORE.data["volume_types"]
        if ref is None:
            return types[CFG.volume_type_id]
        if ref in types:
            return types[ref]
        for t in types.values():
            if t["name"] == ref:
                return t
        raise ApiError(404, "Volume type with name %s could not be found." % ref)

    def vol_create(self, req):
        body = json_body(req, "volume")
        try:
            size = int(body.get("size"))
        except (TypeError, ValueError):
            size = 0
        if size < 1:
            raise ApiError(400, "Invalid input received: 'size' must be an integer greater than 0")
        if size > CFG.max_volume_gib:
            raise ApiError(413, "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds "
                                "allowed gigabytes quota. Requested %sG, quota is %sG." % (size, CFG.max_volume_gib))
        for ref in ("snapshot_id", "source_volid", "backup_id", "consistencygroup_id", "group_id"):
            if body.get(ref):
                raise ApiError(404, "stand-in: %s %s could not be found (no snapshots, backups or "
                                    "groups exist here)" % (ref, body[ref]))
        with STORE.lock:
            vt = self.find_type(body.get("volume_type"))
            image_id = body.get("imageRef") or body.get("image_id")
            if image_id and image_id not in STORE.data["images"]:
                raise ApiError(400, "Invalid image identifier or unable to access requested image.")
            az = body.get("availability_zone")
            if az and az != "nova":
                raise ApiError(400, "Invalid input received: Availability zone '%s' is invalid." % az)
            now = ts("cinder")
            vid = str(uuid.uuid4())
            v = {"id": vid, "name": body.get("name"), "description": body.get("description"),
                 "size": size, "status": "creating", "availability_zone": "nova",
                 "volume_type_id": vt["id"], "metadata": dict(body.get("metadata") or {}),
                 "attachments": [], "bootable": "true" if image_id else "false",
                 "image_id": image_id, "project_id": req.project, "user_id": CFG.user_id,
                 "created_at": now, "updated_at": now}
            STORE.data["volumes"][vid] = v
            STORE.save()
            view = self.vol_view(v, req)
        if CFG.volume_delay <= 0:
            # --volume-delay 0: ready before the answer (fast tests)
            self.finish_create(vid)
            with STORE.lock:
                view = self.vol_view(STORE.data["volumes"][vid], req)
        else:
            timer = threading.Timer(CFG.volume_delay, self.finish_create, args=(vid,))
            timer.daemon = True
            timer.start()
        return 202, {"volume": view}

    def finish_create(self, vid):
        path = volume_file(vid)
        with STORE.lock:
            v = STORE.data["volumes"].get(vid)
            if v is None or v["status"] != "creating":
                return
            size = v["size"]
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.truncate(size * 1024 ** 3)   # sparse: nothing is written
            status = "available"
        except OSError as e:
            log("volume %s: cannot create %s: %s" % (vid, path, e))
            status = "error"
        with STORE.lock:
            v = STORE.data["volumes"].get(vid)
            if v is not None:
                v.update(status=status, updated_at=ts("cinder"))
                STORE.save()

    def vol_update(self, req, vid):
        body = json_body(req, "volume")
        with STORE.lock:
            v = self.get_volume(vid)
            for k in ("name", "description", "metadata"):
                if k in body:
                    v[k] = body[k]
            v["updated_at"] = ts("cinder")
            STORE.save()
            return 200, {"volume": self.vol_view(v, req)}

    def vol_delete(self, req, vid):
        with STORE.lock:
            v = self.get_volume(vid)
            if v["status"] not in ("available", "error", "error_restoring", "error_extending",
                                   "error_managing") or v["attachments"]:
                raise ApiError(400, "Invalid volume: Volume status must be available or error or "
                                    "error_restoring or error_extending or error_managing and must not "
                                    "be migrating, attached, belong to a group, have snapshots, awaiting "
                                    "a transfer, or be disassociated from snapshots after volume "
                                    "transfer.")
            self.remove(vid)
            STORE.save()
        return 202, None

    def vol_action(self, req, vid):
        if not isinstance(req.body, dict) or len(req.body) != 1:
            raise ApiError(400, "Invalid action body")
        action, arg = next(iter(req.body.items()))
        if action != "os-extend":
            raise Unhandled("volume action %r" % action)
        with STORE.lock:
            v = self.get_volume(vid)
            try:
                new = int((arg or {}).get("new_size"))
            except (TypeError, ValueError):
                raise ApiError(400, "Invalid input received: New size for extend must be specified as "
                                    "an integer.")
            if v["status"] == "in-use" and req.version < (3, 42):
                raise ApiError(400, "Invalid volume: Volume status must be 'available' to extend "
                                    "(in-use extend needs microversion 3.42).")
            if v["status"] not in ("available", "in-use"):
                raise ApiError(400, "Invalid volume: Volume status must be 'available' or 'in-use'.")
            if new <= v["size"]:
                raise ApiError(400, "Invalid input received: New size for extend must be greater than "
                                    "current size. (current: %s, extended: %s)." % (v["size"], new))
            with open(volume_file(vid), "r+b") as f:
                f.truncate(new * 1024 ** 3)
            v.update(size=new, updated_at=ts("cinder"))
            STORE.save()
        return 202, None

    # called by Compute under STORE.lock
    def attach(self, vid, sid, device, attachment_id):
        v = STORE.data["volumes"][vid]
        v["status"] = "in-use"
        v["attachments"].append({"id": vid, "attachment_id": attachment_id, "volume_id": vid,
                                 "server_id": sid, "host_name": "standin-host", "device": device,
                                 "attached_at": ts("cinder")})
        v["updated_at"] = ts("cinder")

    def detach(self, vid, sid):
        v = STORE.data["volumes"].get(vid)
        if v is None:
            return
        v["attachments"] = [a for a in v["attachments"] if a["server_id"] != sid]
        if not v["attachments"] and v["status"] == "in-use":
            v["status"] = "available"
        v["updated_at"] = ts("cinder")

    def remove(self, vid):
        STORE.data["volumes"].pop(vid, None)
        try:
            os.unlink(volume_file(vid))
        except FileNotFoundError:
            pass
        log("volume %s deleted" % vid)

    def type_view(self, t):
        return {"id": t["id"], "name": t["name"], "description": t["description"],
                "is_public": t["is_public"], "extra_specs": dict(t["extra_specs"]),
                "qos_specs_id": None, "os-volume-type-access:is_public": t["is_public"]}

    def type_list(self, req):
        return 200, {"volume_types": [self.type_view(t) for t in STORE.data["volume_types"].values()]}

    def type_default(self, req):
        return 200, {"volume_type": self.type_view(STORE.data["volume_types"][CFG.volume_type_id])}

    def type_show(self, req, tid):
        t = STORE.data["volume_types"].get(tid)
        if t is None:
            raise ApiError(404, "Volume type %s could not be found." % tid)
        return 200, {"volume_type": self.type_view(t)}

    def type_extra_specs(self, req, tid):
        return 200, {"extra_specs": dict(self.type_show(req, tid)[1]["volume_type"]["extra_specs"])}

    def usage(self):
        vols = list(STORE.data["volumes"].values())
        return len(vols), sum(v["size"] for v in vols)

    def limits(self, req):
        with STORE.lock:
            n, gib = self.usage()
        return 200, {"limits": {"rate": [], "absolute": {
            "totalSnapshotsUsed": 0, "maxTotalBackups": 10, "maxTotalVolumeGigabytes": CFG.max_volume_gib,
            "maxTotalSnapshots": 10, "maxTotalBackupGigabytes": 1000, "totalBackupGigabytesUsed": 0,
            "maxTotalVolumes": 100, "totalVolumesUsed": n, "totalBackupsUsed": 0,
            "totalGigabytesUsed": gib}}}

    def quotas(self, req, pid):
        with STORE.lock:
            n, gib = self.usage()
        usage = parse_bool(first_query(req.query, "usage", "false"))

        def q(limit, used):
            return {"limit": limit, "in_use": used, "reserved": 0, "allocated": 0} if usage else limit
        return 200, {"quota_set": {"id": pid, "volumes": q(100, n), "gigabytes": q(CFG.max_volume_gib, gib),
                                   "snapshots": q(10, 0), "backups": q(10, 0),
                                   "backup_gigabytes": q(1000, 0), "per_volume_gigabytes": q(-1, 0),
                                   "groups": q(10, 0)}}

    def az_list(self, req):
        return 200, {"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": True}}]}

    def extensions(self, req):
        return 200, {"extensions": []}


# --------------------------------------------------------------------------
# Networking
# --------------------------------------------------------------------------

NEUTRON_EXTENSIONS = [
    ("security-group", "security-group", "The security groups extension."),
    ("project-id", "project-id field", "Extension that indicates that project_id field is enabled."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources."),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources."),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks."),
    ("port-security", "Port Security", "Provides port security"),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("extra_dhcp_opt", "Neutron Extra DHCP options", "Extra options configuration for DHCP."),
]

NEUTRON_TYPES = {404: "NotFound", 400: "BadRequest", 409: "Conflict", 403: "Forbidden"}


class Network(Service):
    prefix = "/network"

    def __init__(self):
        self.routes = [
            ("GET", r"/networks", self.lister("networks", "networks", self.net_view)),
            ("GET", r"/networks/(?P<rid>[^/]+)", self.shower("networks", "network", self.net_view, "Network")),
            ("GET", r"/subnets", self.lister("subnets", "subnets", self.subnet_view)),
            ("GET", r"/subnets/(?P<rid>[^/]+)", self.shower("subnets", "subnet", self.subnet_view, "Subnet")),
            ("GET", r"/routers", self.lister("routers", "routers", self.router_view)),
            ("GET", r"/routers/(?P<rid>[^/]+)", self.shower("routers", "router", self.router_view, "Router")),
            ("GET", r"/ports", self.lister("ports", "ports", self.port_view)),
            ("GET", r"/ports/(?P<rid>[^/]+)", self.shower("ports", "port", self.port_view, "Port")),
            ("POST", r"/ports", self.port_create),
            ("PUT", r"/ports/(?P<rid>[^/]+)", self.port_update),
            ("DELETE", r"/ports/(?P<rid>[^/]+)", self.port_delete),
            ("GET", r"/security-groups", self.lister("security_groups", "security_groups", self.sg_view)),
            ("GET", r"/security-groups/(?P<rid>[^/]+)",
             self.shower("security_groups", "security_group", self.sg_view, "SecurityGroup")),
            ("POST", r"/security-groups", self.sg_create),
            ("PUT", r"/security-groups/(?P<rid>[^/]+)", self.sg_update),
            ("DELETE", r"/security-groups/(?P<rid>[^/]+)", self.sg_delete),
            ("GET", r"/security-group-rules", self.lister("sg_rules", "security_group_rules", self.rule_view)),
            ("GET", r"/security-group-rules/(?P<rid>[^/]+)",
             self.shower("sg_rules", "security_group_rule", self.rule_view, "SecurityGroupRule")),
            ("POST", r"/security-group-rules", self.rule_create),
            ("DELETE", r"/security-group-rules/(?P<rid>[^/]+)", self.rule_delete),
            ("GET", r"/floatingips", self.fip_list),
            ("POST", r"/floatingips", self.fip_create),
            ("GET", r"/floatingips/(?P<rid>[^/]+)", self.fip_missing),
            ("PUT", r"/floatingips/(?P<rid>[^/]+)", self.fip_missing),
            ("DELETE", r"/floatingips/(?P<rid>[^/]+)", self.fip_missing),
            ("GET", r"/extensions", self.ext_list),
            ("GET", r"/extensions/(?P<alias>[^/]+)", self.ext_show),
        ]

    def error_body(self, e):
        return {"NeutronError": {"type": e.kind or NEUTRON_TYPES.get(e.status, "NeutronError"),
                                 "message": e.message, "detail": ""}}

    def handle(self, req, sub):
        if req.method == "GET" and sub in ("", "/"):
            return 200, {"versions": [{"id": "v2.0", "status": "CURRENT",
                                       "links": [{"rel": "self", "href": self.url("/v2.0/")}]}]}, {}
        if not req.token:
            return 401, UNAUTHORIZED, {}
        if req.method == "GET" and sub in ("/v2.0", "/v2.0/"):
            return 200, {"resources": [
                {"name": n, "collection": c, "links": [{"rel": "self", "href": self.url("/v2.0/", c)}]}
                for n, c in (("network", "networks"), ("subnet", "subnets"), ("port", "ports"))]}, {}
        if not sub.startswith("/v2.0/"):
            raise Unhandled()
        rest = sub[len("/v2.0"):].rstrip("/")
        if rest.endswith(".json"):
            rest = rest[:-5]
        req.project = CFG.project_id
        fn, args = match_routes(self.routes, req.method, rest)
        if fn is None:
            raise Unhandled()
        try:
            status, body = fn(req, **args)
        except ApiError as e:
            return e.status, self.error_body(e), {}
        return status, body, {}

    # ---- generic list/show ---------------------------------------------------
    NON_FILTERS = {"fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"}

    def apply_filters(self, items, q):
        for key, vals in q.items():
            if key in self.NON_FILTERS:
                continue
            if key == "fixed_ips":
                conds = [v.split("=", 1) for v in vals]
                items = [it for it in items if any(ip.get(k) == x for k, x in conds if k
                                                   for ip in it.get("fixed_ips", []))]
                continue
            if items and key not in items[0]:
                log("UNHANDLED network filter %r" % key)
                raise ApiError(400, "%s is not a valid filter (stand-in: unknown attribute)" % key,
                               kind="HTTPBadRequest")

            def norm(x):
                if isinstance(x, bool):
                    return str(x).lower()
                return "" if x is None else str(x)
            wanted = {v.lower() if v.lower() in ("true", "false") else v for v in vals}
            items = [it for it in items if (norm(it.get(key)) in wanted if not isinstance(it.get(key), list)
                                            else bool(set(map(str, it.get(key))) & wanted))]
        return items

    def project(self, view, q):
        fields = q.get("fields")
        if not fields:
            return view
        return {k: v for k, v in view.items() if k in fields}

    def lister(self, coll, key, view):
        def fn(req):
            with STORE.lock:
                items = [view(x) for x in sorted(STORE.data[coll].values(),
                                                 key=lambda x: (x.get("created_at", ""), x["id"]))]
                items = self.apply_filters(items, req.query)
                return 200, {key: [self.project(i, req.query) for i in items]}
        return fn

    def shower(self, coll, key, view, kind):
        def fn(req, rid):
            with STORE.lock:
                x = STORE.data[coll].get(rid)
                if x is None:
                    label = re.sub(r"(?<!^)([A-Z])", r" \1", kind).lower()
                    raise ApiError(404, "%s %s could not be found." % (label[0].upper() + label[1:], rid),
                                   kind=kind + "NotFound")
                return 200, {key: self.project(view(x), req.query)}
        return fn

    # ---- views ----------------------------------------------------------------
    @staticmethod
    def common(x):
        return {"tenant_id": x["project_id"], "project_id": x["project_id"],
                "created_at": x.get("created_at"), "updated_at": x.get("updated_at"),
                "revision_number": x.get("revision_number", 1), "tags": [],
                "description": x.get("description", "")}

    def net_view(self, n):
        out = {"id": n["id"], "name": n["name"], "status": "ACTIVE", "subnets": list(n["subnets"]),
               "admin_state_up": True, "shared": False, "router:external": False, "mtu": 1500,
               "port_security_enabled": True, "availability_zones": ["nova"],
               "availability_zone_hints": [], "ipv4_address_scope": None, "ipv6_address_scope": None,
               "is_default": False, "l2_adjacency": True, "qos_policy_id": None,
               "provider:network_type": "flat", "provider:physical_network": "standin",
               "provider:segmentation_id": None}
        out.update(self.common(n))
        return out

    def subnet_view(self, s):
        out = {"id": s["id"], "name": s["name"], "network_id": s["network_id"], "cidr": s["cidr"],
               "ip_version": s["ip_version"], "gateway_ip": s["gateway_ip"],
               "allocation_pools": [dict(p) for p in s["allocation_pools"]], "host_routes": [],
               "dns_nameservers": [], "enable_dhcp": True, "ipv6_ra_mode": None,
               "ipv6_address_mode": None, "subnetpool_id": None, "service_types": [],
               "segment_id": None, "dns_publish_fixed_ip": False}
        out.update(self.common(s))
        return out

    def router_view(self, r):
        out = {"id": r["id"], "name": r["name"], "status": "ACTIVE", "admin_state_up": True,
               "external_gateway_info": None, "routes": [], "distributed": False, "ha": False,
               "availability_zones": ["nova"], "availability_zone_hints": [], "flavor_id": None}
        out.update(self.common(r))
        return out

    def port_view(self, p):
        bound = bool(p.get("binding:host_id"))
        out = {"id": p["id"], "name": p["name"], "network_id": p["network_id"],
               "mac_address": p["mac_address"], "admin_state_up": p.get("admin_state_up", True),
               "status": p["status"], "device_id": p.get("device_id", ""),
               "device_owner": p.get("device_owner", ""),
               "fixed_ips": [dict(i) for i in p["fixed_ips"]],
               "security_groups": list(p["security_groups"]), "allowed_address_pairs": [],
               "extra_dhcp_opts": [], "binding:vnic_type": "normal",
               "binding:host_id": p.get("binding:host_id", ""),
               "binding:vif_type": "ovs" if bound else "unbound",
               "binding:vif_details": {}, "binding:profile": {},
               "port_security_enabled": p.get("port_security_enabled", True),
               "dns_name": "", "qos_policy_id": None, "qos_network_policy_id": None,
               "propagate_uplink_status": False}
        out.update(self.common(p))
        return out

    def rule_view(self, r):
        out = {"id": r["id"], "security_group_id": r["security_group_id"], "direction": r["direction"],
               "ethertype": r["ethertype"], "protocol": r["protocol"],
               "port_range_min": r["port_range_min"], "port_range_max": r["port_range_max"],
               "remote_ip_prefix": r["remote_ip_prefix"], "remote_group_id": r["remote_group_id"],
               "remote_address_group_id": None, "normalized_cidr": r["remote_ip_prefix"],
               "belongs_to_default_sg": STORE.data["security_groups"].get(
                   r["security_group_id"], {}).get("name") == "default"}
        out.update(self.common(r))
        out["description"] = r.get("description") or ""
        return out

    def sg_view(self, g):
        out = {"id": g["id"], "name": g["name"], "stateful": g.get("stateful", True), "shared": False,
               "security_group_rules": [self.rule_view(r) for r in STORE.data["sg_rules"].values()
                                        if r["security_group_id"] == g["id"]]}
        out.update(self.common(g))
        return out

    # ---- ports ----------------------------------------------------------------
    def used_ips(self, subnet_id):
        return {i["ip_address"] for p in STORE.data["ports"].values() for i in p["fixed_ips"]
                if i["subnet_id"] == subnet_id}

    def make_port(self, network_id, fixed_ips, security_groups, project, name="", description="",
                  extra=None):
        """Create a port in STORE (caller holds STORE.lock). fixed_ips: None
        or [{subnet_id?, ip_address?}]; security_groups None -> default."""
        net = STORE.data["networks"].get(network_id)
        if net is None:
            raise ApiError(404, "Network %s could not be found." % network_id, kind="NetworkNotFound")
        if security_groups is None:
            security_groups = [CFG.default_sg_id]
        if not isinstance(security_groups, list):
            raise ApiError(400, "Invalid input for security_groups.", kind="InvalidInput")
        for gid in security_groups:
            if gid not in STORE.data["security_groups"]:
                raise ApiError(404, "Security group %s does not exist" % gid, kind="SecurityGroupNotFound")
        requests = fixed_ips if fixed_ips else [{}]
        chosen = []
        taken = set()
        for r in requests:
            sid = r.get("subnet_id")
            if sid is None:
                if r.get("ip_address"):
                    sid = next((s for s in net["subnets"] if ipaddress.ip_address(r["ip_address"]) in
                                ipaddress.ip_network(STORE.data["subnets"][s]["cidr"])), None)
                    if sid is None:
                        raise ApiError(400, "IP address %s is not a valid IP for the specified network."
                                       % r["ip_address"], kind="InvalidIpForNetwork")
                else:
                    sid = net["subnets"][0]
            sub = STORE.data["subnets"].get(sid)
            if sub is None or sub["network_id"] != network_id:
                raise ApiError(400, "Invalid input for operation: Failed to create port on network %s, "
                                    "because fixed_ips included invalid subnet %s." % (network_id, sid),
                               kind="InvalidInput")
            cidr = ipaddress.ip_network(sub["cidr"])
            used = self.used_ips(sid) | taken
            if r.get("ip_address"):
                try:
                    ip = ipaddress.ip_address(r["ip_address"])
                except ValueError:
                    raise ApiError(400, "Invalid input for operation: %s is not a valid IP address."
                                   % r["ip_address"], kind="InvalidInput")
                if ip not in cidr or ip in (cidr.network_address, cidr.broadcast_address):
                    raise ApiError(400, "IP address %s is not a valid IP for the specified subnet." % ip,
                                   kind="InvalidIpForSubnet")
                if str(ip) in used or str(ip) == sub["gateway_ip"]:
                    raise ApiError(409, "IP address %s already allocated in subnet %s" % (ip, sid),
                                   kind="IpAddressAlreadyAllocated")
                addr = str(ip)
            else:
                pool = sub["allocation_pools"][0]
                start = ipaddress.ip_address(pool["start"])
                end = ipaddress.ip_address(pool["end"])
                addr = None
                cur = start
                while cur <= end:
                    if str(cur) not in used:
                        addr = str(cur)
                        break
                    cur += 1
                if addr is None:
                    raise ApiError(409, "No more IP addresses available on network %s." % network_id,
                                   kind="IpAddressGenerationFailure")
            taken.add(addr)
            chosen.append({"subnet_id": sid, "ip_address": addr})
        pid = str(uuid.uuid4())
        now = ts()
        p = {"id": pid, "name": name or "", "description": description or "", "network_id": network_id,
             "project_id": project, "mac_address": mac_for(pid), "fixed_ips": chosen,
             "security_groups": list(security_groups), "device_id": "", "device_owner": "",
             "status": "DOWN", "binding:host_id": "", "admin_state_up": True,
             "port_security_enabled": True, "created_at": now, "updated_at": now, "revision_number": 1}
        p.update(extra or {})
        STORE.data["ports"][pid] = p
        return p

    def port_create(self, req):
        body = json_body(req, "port")
        if not body.get("network_id"):
            raise ApiError(400, "Invalid input for operation: network_id is required.", kind="InvalidInput")
        extra = {}
        for k in ("device_id", "device_owner", "admin_state_up", "port_security_enabled",
                  "binding:host_id"):
            if k in body:
                extra[k] = body[k]
        with STORE.lock:
            fixed = body.get("fixed_ips")
            if fixed is not None and not isinstance(fixed, list):
                raise ApiError(400, "Invalid input for fixed_ips.", kind="InvalidInput")
            p = self.make_port(body["network_id"], fixed, body.get("security_groups"),
                               body.get("project_id") or body.get("tenant_id") or req.project,
                               name=body.get("name", ""), description=body.get("description", ""),
                               extra=extra)
            STORE.save()
            return 201, {"port": self.port_view(p)}

    def port_update(self, req, rid):
        body = json_body(req, "port")
        with STORE.lock:
            p = STORE.data["ports"].get(rid)
            if p is None:
                raise ApiError(404, "Port %s could not be found." % rid, kind="PortNotFound")
            if "security_groups" in body:
                for gid in body["security_groups"] or []:
                    if gid not in STORE.data["security_groups"]:
                        raise ApiError(404, "Security group %s does not exist" % gid,
                                       kind="SecurityGroupNotFound")
                p["security_groups"] = list(body["security_groups"] or [])
            for k in ("name", "description", "device_id", "device_owner", "admin_state_up",
                      "port_security_enabled", "binding:host_id"):
                if k in body:
                    p[k] = body[k]
            unknown = set(body) - {"security_groups", "name", "description", "device_id", "device_owner",
                                   "admin_state_up", "port_security_enabled", "binding:host_id"}
            if unknown:
                log("UNHANDLED network PUT port attributes %s (ignored)" % sorted(unknown))
            p["updated_at"] = ts()
            p["revision_number"] = p.get("revision_number", 1) + 1
            STORE.save()
            return 200, {"port": self.port_view(p)}

    def port_delete(self, req, rid):
        with STORE.lock:
            p = STORE.data["ports"].get(rid)
            if p is None:
                raise ApiError(404, "Port %s could not be found." % rid, kind="PortNotFound")
            if p.get("device_owner", "").startswith("network:router"):
                raise ApiError(409, "Port %s cannot be deleted directly via the port API: has device "
                                    "owner %s." % (rid, p["device_owner"]), kind="ServicePortInUse")
            del STORE.data["ports"][rid]
            for s in STORE.data["servers"].values():
                if rid in s["ports"]:
                    s["ports"].remove(rid)
            STORE.save()
        return 204, None

    # ---- security groups ------------------------------------------------------------
    def sg_create(self, req):
        body = json_body(req, "security_group")
        name = body.get("name", "")
        if name == "default":
            raise ApiError(409, "Default security group already exists.", kind="SecurityGroupDefaultAlreadyExists")
        with STORE.lock:
            g = STORE.new_security_group(name, body.get("description", ""),
                                         body.get("project_id") or body.get("tenant_id") or req.project)
            if "stateful" in body:
                g["stateful"] = parse_bool(body["stateful"])
            STORE.save()
            return 201, {"security_group": self.sg_view(g)}

    def sg_update(self, req, rid):
        body = json_body(req, "security_group")
        with STORE.lock:
            g = STORE.data["security_groups"].get(rid)
            if g is None:
                raise ApiError(404, "Security group %s does not exist" % rid, kind="SecurityGroupNotFound")
            for k in ("name", "description"):
                if k in body:
                    g[k] = body[k]
            g["updated_at"] = ts()
            STORE.save()
            return 200, {"security_group": self.sg_view(g)}

    def sg_delete(self, req, rid):
        with STORE.lock:
            g = STORE.data["security_groups"].get(rid)
            if g is None:
                raise ApiError(404, "Security group %s does not exist" % rid, kind="SecurityGroupNotFound")
            if g["name"] == "default":
                raise ApiError(409, "Insufficient rights for removing default security group.",
                               kind="SecurityGroupCannotRemoveDefault")
            users = [p["id"] for p in STORE.data["ports"].values() if rid in p["security_groups"]]
            if users:
                raise ApiError(409, "Security Group %s in use." % rid, kind="SecurityGroupInUse")
            del STORE.data["security_groups"][rid]
            for k in [k for k, r in STORE.data["sg_rules"].items() if r["security_group_id"] == rid]:
                del STORE.data["sg_rules"][k]
            STORE.save()
        return 204, None

    def rule_create(self, req):
        body = json_body(req, "security_group_rule")
        with STORE.lock:
            gid = body.get("security_group_id")
            g = STORE.data["security_groups"].get(gid or "")
            if g is None:
                raise ApiError(404, "Security group %s does not exist" % gid, kind="SecurityGroupNotFound")
            direction = body.get("direction")
            if direction not in ("ingress", "egress"):
                raise ApiError(400, "Invalid input for direction. Reason: %s is not in valid_values."
                               % direction, kind="InvalidInput")
            ethertype = body.get("ethertype", "IPv4")
            if ethertype not in ("IPv4", "IPv6"):
                raise ApiError(400, "Invalid input for ethertype.", kind="InvalidInput")
            protocol = body.get("protocol")
            protocol = None if protocol in (None, "", "any") else str(protocol).lower()
            pmin, pmax = body.get("port_range_min"), body.get("port_range_max")
            try:
                pmin = None if pmin is None else int(pmin)
                pmax = None if pmax is None else int(pmax)
            except (TypeError, ValueError):
                raise ApiError(400, "Invalid value for port", kind="InvalidInput")
            if (pmin is not None or pmax is not None) and protocol is None:
                raise ApiError(400, "Must also specify protocol if port range is given.",
                               kind="SecurityGroupProtocolRequiredWithPorts")
            if protocol in ("tcp", "udp", "6", "17"):
                if pmin is not None and pmax is None:
                    pmax = pmin
                if pmin is not None and not (1 <= pmin <= pmax <= 65535):
                    raise ApiError(400, "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                                   kind="SecurityGroupInvalidPortRange")
            prefix = body.get("remote_ip_prefix")
            if prefix:
                try:
                    net = ipaddress.ip_network(prefix, strict=False)
                except ValueError:
                    raise ApiError(400, "Invalid input for remote_ip_prefix.", kind="InvalidInput")
                if ("IPv%d" % net.version) != ethertype:
                    raise ApiError(400, "Conflicting value ethertype %s for CIDR %s" % (ethertype, prefix),
                                   kind="SecurityGroupRuleParameterConflict")
                prefix = str(net)
            remote_group = body.get("remote_group_id")
            if remote_group and remote_group not in STORE.data["security_groups"]:
                raise ApiError(404, "Security group %s does not exist" % remote_group,
                               kind="SecurityGroupNotFound")
            key = (gid, direction, ethertype, protocol, pmin, pmax, prefix, remote_group)
            for r in STORE.data["sg_rules"].values():
                if (r["security_group_id"], r["direction"], r["ethertype"], r["protocol"],
                        r["port_range_min"], r["port_range_max"], r["remote_ip_prefix"],
                        r["remote_group_id"]) == key:
                    raise ApiError(409, "Security group rule already exists. Rule id is %s." % r["id"],
                                   kind="SecurityGroupRuleExists")
            now = ts()
            rid = str(uuid.uuid4())
            r = {"id": rid, "security_group_id": gid, "direction": direction, "ethertype": ethertype,
                 "protocol": protocol, "port_range_min": pmin, "port_range_max": pmax,
                 "remote_ip_prefix": prefix, "remote_group_id": remote_group,
                 "description": body.get("description"), "project_id": g["project_id"],
                 "created_at": now, "updated_at": now, "revision_number": 0}
            STORE.data["sg_rules"][rid] = r
            STORE.save()
            return 201, {"security_group_rule": self.rule_view(r)}

    def rule_delete(self, req, rid):
        with STORE.lock:
            if STORE.data["sg_rules"].pop(rid, None) is None:
                raise ApiError(404, "Security group rule %s does not exist" % rid,
                               kind="SecurityGroupRuleNotFound")
            STORE.save()
        return 204, None

    # ---- floating ips, extensions ---------------------------------------------------
    def fip_list(self, req):
        # No external network exists, so there are never floating IPs; the
        # filters are still checked so that a typo shows.
        for key in req.query:
            if key not in self.NON_FILTERS | {"port_id", "floating_network_id", "floating_ip_address",
                                              "fixed_ip_address", "router_id", "status", "project_id",
                                              "tenant_id", "id", "description"}:
                log("UNHANDLED network filter %r" % key)
                raise ApiError(400, "%s is not a valid filter" % key, kind="HTTPBadRequest")
        return 200, {"floatingips": []}

    def fip_create(self, req):
        body = json_body(req, "floatingip")
        raise ApiError(404, "External network %s is not found (the stand-in has no external "
                            "network)." % body.get("floating_network_id"), kind="ExternalNetworkNotFound")

    def fip_missing(self, req, rid):
        raise ApiError(404, "Floating IP %s could not be found" % rid, kind="FloatingIPNotFound")

    def ext_view(self, e):
        return {"alias": e[0], "name": e[1], "description": e[2], "updated": "2024-01-01T00:00:00-00:00",
                "links": []}

    def ext_list(self, req):
        return 200, {"extensions": [self.ext_view(e) for e in NEUTRON_EXTENSIONS]}

    def ext_show(self, req, alias):
        for e in NEUTRON_EXTENSIONS:
            if e[0] == alias:
                return 200, {"extension": self.ext_view(e)}
        raise ApiError(404, "Extension with alias %s does not exist" % alias, kind="ExtensionNotFound")


# --------------------------------------------------------------------------
# Image
# --------------------------------------------------------------------------

def _nullable(t):
    return {"type": [t, "null"]}


IMAGE_SCHEMA_PROPERTIES = {
    "id": {"type": "string", "description": "An identifier for the image",
           "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"},
    "name": dict(_nullable("string"), description="Descriptive name for the image", maxLength=255),
    "status": {"type": "string", "readOnly": True, "description": "Status of the image",
               "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing",
                        "pending_delete", "deactivated"]},
    "visibility": {"type": "string", "description": "Scope of image accessibility",
                   "enum": ["community", "public", "private", "shared"]},
    "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
    "os_hidden": {"type": "boolean", "description": "If true, image will not appear in default image list response."},
    "checksum": dict(_nullable("string"), readOnly=True, maxLength=32),
    "os_hash_algo": dict(_nullable("string"), readOnly=True, maxLength=64),
    "os_hash_value": dict(_nullable("string"), readOnly=True, maxLength=128),
    "owner": dict(_nullable("string"), maxLength=255),
    "size": dict(_nullable("integer"), readOnly=True),
    "virtual_size": dict(_nullable("integer"), readOnly=True),
    "container_format": dict(_nullable("string"), enum=[None, "ami", "ari", "aki", "bare", "ovf", "ova",
                                                         "docker", "compressed"]),
    "disk_format": dict(_nullable("string"), enum=[None, "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw",
                                                    "qcow2", "vdi", "iso", "ploop"]),
    "created_at": {"type": "string", "readOnly": True},
    "updated_at": {"type": "string", "readOnly": True},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}},
    "direct_url": {"type": "string", "readOnly": True},
    "min_ram": {"type": "integer"},
    "min_disk": {"type": "integer"},
    "self": {"type": "string", "readOnly": True},
    "file": {"type": "string", "readOnly": True},
    "stores": {"type": "string", "readOnly": True},
    "schema": {"type": "string", "readOnly": True},
    "locations": {"type": "array", "items": {"type": "object"}},
}


class Image(Service):
    prefix = "/image"

    def __init__(self):
        self.routes = [
            ("GET", r"/v2/images", self.image_list),
            ("GET", r"/v2/images/(?P<iid>[^/]+)", self.image_show),
            ("PUT", r"/v2/images/(?P<iid>[^/]+)/tags/(?P<tag>[^/]+)", self.tag_add),
            ("DELETE", r"/v2/images/(?P<iid>[^/]+)/tags/(?P<tag>[^/]+)", self.tag_delete),
            ("GET", r"/v2/schemas/image", self.schema_image),
            ("GET", r"/v2/schemas/images", self.schema_images),
        ]

    def error_body(self, e):
        # Glance answers errors as webob's text pages, not JSON
        title = {400: "Bad Request", 404: "Not Found", 409: "Conflict"}.get(e.status, "Error")
        return ("%d %s\n\n%s\n\n   " % (e.status, title, e.message)).encode()

    def versions(self):
        cur = [("v2.16", "CURRENT")] + [("v2.%d" % n, "SUPPORTED") for n in range(15, -1, -1)]
        return {"versions": [{"id": i, "status": st, "links": [{"rel": "self", "href": self.url("/v2/")}]}
                             for i, st in cur]}

    def handle(self, req, sub):
        if req.method == "GET" and sub in ("", "/"):
            return 300, self.versions(), {}
        if req.method == "GET" and sub in ("/versions", "/versions/"):
            return 200, self.versions(), {}
        if not req.token:
            return 401, UNAUTHORIZED, {}
        req.project = CFG.project_id
        fn, args = match_routes(self.routes, req.method, sub.rstrip("/"))
        if fn is None:
            raise Unhandled()
        try:
            status, body = fn(req, **args)
        except ApiError as e:
            return e.status, self.error_body(e), {}
        return status, body, {}

    def view(self, i):
        out = dict(i)
        out["tags"] = list(i["tags"])
        out.update({"self": "/v2/images/%s" % i["id"], "file": "/v2/images/%s/file" % i["id"],
                    "schema": "/v2/schemas/image"})
        return out

    def image_list(self, req):
        q = req.query
        with STORE.lock:
            items = list(STORE.data["images"].values())
        for key in ("name", "status", "visibility", "owner", "container_format", "disk_format", "id"):
            if key in q:
                items = [i for i in items if str(i.get(key)) == q[key][0]]
        if "visibility" not in q:
            items = [i for i in items if i["visibility"] != "community"]
        if "tag" in q:
            need = set(q["tag"])
            items = [i for i in items if need <= set(i["tags"])]
        keys = []
        for spec in ",".join(q.get("sort", [])).split(","):
            if spec:
                k, _, d = spec.partition(":")
                keys.append((k, d or "desc"))
        for k, d in zip(q.get("sort_key", []), q.get("sort_dir", []) + ["desc"] * 10):
            keys.append((k, d))
        for k, d in reversed(keys or [("created_at", "desc")]):
            if k not in IMAGE_SCHEMA_PROPERTIES:
                raise ApiError(400, "Invalid sort key: %s" % k)
            items.sort(key=lambda i: (i.get(k) is None, str(i.get(k)), i["id"]), reverse=(d == "desc"))
        marker = first_query(q, "marker")
        if marker:
            ids = [i["id"] for i in items]
            if marker not in ids:
                raise ApiError(400, "Invalid marker. Image %s could not be found." % marker)
            items = items[ids.index(marker) + 1:]
        limit = int_query(q, "limit", 25)
        page = items[:limit]
        body = {"images": [self.view(i) for i in page], "first": "/v2/images",
                "schema": "/v2/schemas/images"}
        if len(items) > limit and page:
            nq = [(k, v) for k, vals in q.items() if k != "marker" for v in vals] + [("marker", page[-1]["id"])]
            body["next"] = "/v2/images?" + urllib.parse.urlencode(nq)
        return 200, body

    def get_image(self, iid):
        i = STORE.data["images"].get(iid)
        if i is None:
            raise ApiError(404, "No image found with ID %s" % iid)
        return i

    def image_show(self, req, iid):
        with STORE.lock:
            return 200, self.view(self.get_image(iid))

    def tag_add(self, req, iid, tag):
        with STORE.lock:
            i = self.get_image(iid)
            if tag not in i["tags"]:
                i["tags"].append(tag)
            STORE.save()
        return 204, None

    def tag_delete(self, req, iid, tag):
        with STORE.lock:
            i = self.get_image(iid)
            if tag not in i["tags"]:
                raise ApiError(404, "Tag %s not found" % tag)
            i["tags"].remove(tag)
            STORE.save()
        return 204, None

    def image_schema(self):
        return {"name": "image", "properties": IMAGE_SCHEMA_PROPERTIES,
                "additionalProperties": {"type": "string"},
                "links": [{"rel": "self", "href": "{self}"}, {"rel": "enclosure", "href": "{file}"},
                          {"rel": "describedby", "href": "{schema}"}]}

    def schema_image(self, req):
        return 200, self.image_schema()

    def schema_images(self, req):
        return 200, {"name": "images", "properties": {
            "images": {"type": "array", "items": self.image_schema()},
            "schema": {"type": "string"}, "first": {"type": "string"}, "next": {"type": "string"}},
            "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                      {"rel": "describedby", "href": "{schema}"}]}


COMPUTE = Compute()
VOLUME = Volume()
NETWORK = Network()
IMAGE = Image()
SERVICES = (COMPUTE, VOLUME, NETWORK, IMAGE)


# ===========================================================================
# HTTP
# ===========================================================================

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openstack-standin/1"

    def log_message(self, fmt, *args):
        pass

    def handle_any(self):
        started = time.time()
        split = urllib.parse.urlsplit(self.path)
        # "//" collapses: Trove's nova_compute_url / cinder_url overrides
        # build ".../v2.1//<project>/" URLs
        path = re.sub(r"/{2,}", "/", urllib.parse.unquote(split.path))
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, body, headers = 500, None, {}
        try:
            parsed = None
            if raw:
                try:
                    parsed = json.loads(raw.decode("utf-8"))
                except ValueError:
                    raise ApiError(400, "Malformed request body: not JSON")
            req = Request(self.command, path, query, self.headers, parsed)
            status, body, headers = self.dispatch(req, path)
        except ApiError as e:
            status, body = e.status, {"error": {"code": e.status, "message": e.message}}
        except Unhandled as e:
            log("UNHANDLED %s %s%s%s" % (self.command, path, "?" + split.query if split.query else "",
                                         " (%s)" % e if str(e) else ""))
            status, body = 404, {"error": {"code": 404, "title": "Not Found", "message":
                                 "openstack stand-in: no handler for %s %s" % (self.command, path)}}
        except Exception as e:   # a stand-in bug: answer 500 and show it
            traceback.print_exc()
            status, body = 500, {"error": {"code": 500, "message": "stand-in error: %s" % e}}
        if body is None or status == 204:
            payload, ctype = b"", None
        elif isinstance(body, bytes):
            payload, ctype = body, "text/plain; charset=UTF-8"
        else:
            payload, ctype = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        req_id = "req-" + str(uuid.uuid4())
        self.send_header("x-openstack-request-id", req_id)
        self.send_header("x-compute-request-id", req_id)
        for k, v in headers.items():
            self.send_header(k, v)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Keystone uri="%s"' % CFG.public_url)
        if payload:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)
        log("%s %s%s %d %.0fms" % (self.command, path, "?" + split.query if split.query else "",
                                   status, (time.time() - started) * 1000))

    def dispatch(self, req, path):
        if path in ("", "/"):
            return 200, {"standin": "openstack (Nova, Cinder, Neutron, Glance subset) for tests",
                         "catalog": catalog()}, {}
        for svc in SERVICES:
            if path == svc.prefix or path.startswith(svc.prefix + "/"):
                return svc.handle(req, path[len(svc.prefix):])
        raise Unhandled()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


# ===========================================================================
# main
# ===========================================================================

def catalog():
    return [{"type": "compute", "name": "nova", "url": CFG.public_url + "/compute/v2.1"},
            {"type": "volumev3", "name": "cinderv3", "url": CFG.public_url + "/volume/v3"},
            {"type": "network", "name": "neutron", "url": CFG.public_url + "/network"},
            {"type": "image", "name": "glance", "url": CFG.public_url + "/image"}]


def seeds():
    return {"flavors": [{"id": f["id"], "name": f["name"], "vcpus": f["vcpus"], "ram": f["ram"],
                         "disk": f["disk"]} for f in CFG.flavor_list],
            "network": {"id": CFG.network_id, "name": CFG.network_name},
            "subnet": {"id": CFG.subnet_id, "cidr": CFG.network_cidr},
            "router": {"id": CFG.router_id, "interface_port_id": CFG.router_port_id},
            "image": {"id": CFG.image_id, "name": CFG.image_name, "tags": CFG.image_tags},
            "default_security_group_id": CFG.default_sg_id,
            "volume_type": {"id": CFG.volume_type_id, "name": "__DEFAULT__"},
            "project_id": CFG.project_id}


def parse_flavor(spec):
    """NAME:VCPUS:RAM_MB:DISK_GIB[:ID]"""
    bits = spec.split(":")
    if len(bits) not in (4, 5):
        raise argparse.ArgumentTypeError("flavor must be NAME:VCPUS:RAM_MB:DISK_GIB[:ID]")
    name, vcpus, ram, disk = bits[0], int(bits[1]), int(bits[2]), int(bits[3])
    fid = bits[4] if len(bits) == 5 else name.replace(".", "-")
    return {"id": fid, "name": name, "vcpus": vcpus, "ram": ram, "disk": disk, "ephemeral": 0,
            "swap": 0, "description": None, "extra_specs": {}}


def build_config(argv=None):
    p = argparse.ArgumentParser(description="OpenStack stand-in (Nova/Cinder/Neutron/Glance subset) "
                                            "for Trove tests. NOT OpenStack.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8774, help="0 picks a free port")
    p.add_argument("--public-url", default=None,
                   help="base URL put in the catalog (default http://HOST:PORT)")
    p.add_argument("--state", default="./openstack-standin-state")
    p.add_argument("--hypervisor", default=None, help="command run as HYPERVISOR up|reboot|down ID DIR")
    p.add_argument("--hypervisor-timeout", type=float, default=120.0)
    p.add_argument("--network-cidr", default="10.213.0.0/24")
    p.add_argument("--network-name", default="k2hdkc-box")
    p.add_argument("--network-id", default=None)
    p.add_argument("--subnet-id", default=None)
    p.add_argument("--image-id", default=None)
    p.add_argument("--image-name", default="trove-k2hdkc-guest")
    p.add_argument("--image-tags", default="trove,k2hdkc")
    p.add_argument("--flavor", action="append", type=parse_flavor, default=None,
                   help="NAME:VCPUS:RAM_MB:DISK_GIB[:ID], repeatable (default k2hdkc.small "
                        "1/2048/10 id k2hdkc-small and k2hdkc.medium 2/4096/20 id k2hdkc-medium)")
    p.add_argument("--project-id", default=None,
                   help="project of resources created without one in the URL")
    p.add_argument("--user-id", default=None)
    p.add_argument("--volume-delay", type=float, default=0.5,
                   help="seconds a new volume stays 'creating' (0: available at once)")
    p.add_argument("--max-volume-gib", type=int, default=1000)
    p.add_argument("--print-catalog", action="store_true")
    p.add_argument("--print-seeds", action="store_true")
    cfg = p.parse_args(argv)
    ipaddress.ip_network(cfg.network_cidr, strict=False)
    cfg.flavor_list = cfg.flavor or [parse_flavor("k2hdkc.small:1:2048:10"),
                                     parse_flavor("k2hdkc.medium:2:4096:20")]
    cfg.network_id = cfg.network_id or stable_id("network", cfg.network_name)
    cfg.subnet_id = cfg.subnet_id or stable_id("subnet", cfg.network_name)
    cfg.router_id = stable_id("router", cfg.network_name)
    cfg.router_port_id = stable_id("router-port", cfg.network_name)
    cfg.image_id = cfg.image_id or stable_id("image", cfg.image_name)
    cfg.image_tags = [t for t in cfg.image_tags.split(",") if t]
    cfg.project_id = cfg.project_id or uuid.uuid5(ID_NAMESPACE, "project:service").hex
    cfg.user_id = cfg.user_id or uuid.uuid5(ID_NAMESPACE, "user:trove").hex
    cfg.default_sg_id = stable_id("security-group", "default:" + cfg.project_id)
    cfg.volume_type_id = stable_id("volume-type", "__DEFAULT__")
    cfg.state = os.path.abspath(cfg.state)
    return cfg


def main(argv=None):
    global CFG, STORE
    cfg = build_config(argv)
    CFG = cfg
    if cfg.print_catalog or cfg.print_seeds:
        cfg.public_url = (cfg.public_url or "http://%s:%d" % (cfg.host, cfg.port)).rstrip("/")
        print(json.dumps(catalog() if cfg.print_catalog else seeds(), indent=1))
        return 0
    if not cfg.hypervisor:
        sys.exit("--hypervisor is required")
    cfg.hypervisor = os.path.abspath(cfg.hypervisor) if os.sep in cfg.hypervisor else cfg.hypervisor
    os.makedirs(os.path.join(cfg.state, "guests"), exist_ok=True)
    os.makedirs(os.path.join(cfg.state, "volumes"), exist_ok=True)
    server = ThreadingHTTPServer((cfg.host, cfg.port), Handler)
    server.daemon_threads = True
    cfg.public_url = (cfg.public_url or "http://%s:%d" % (cfg.host, server.server_address[1])).rstrip("/")
    STORE = Store(cfg)
    STORE.save()
    print(json.dumps({"url": cfg.public_url, "catalog": catalog(), "seeds": seeds()}), flush=True)
    log("openstack stand-in listening on %s (state %s, hypervisor %s)" % (cfg.public_url, cfg.state,
                                                                          cfg.hypervisor))

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
