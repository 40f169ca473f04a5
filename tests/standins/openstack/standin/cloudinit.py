"""The cloud-config reader of the OpenStack STAND-IN: the write_files of the
user_data Trove 26 passes to Nova (it sends the injected files there as
cloud-config write_files, b64), as cloud-init would write them.
"""

import base64
import gzip

from .yaml_subset import YamlError, yaml_load


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
