"""A post-import hook: extends seven Trove modules right after Trove loads them.

Trove has no plugin point for a datastore's option group, its registry
extension or its configuration parser; they live in module-level objects
(``CONF``, ``REGISTRY_EXT_DEFAULTS``, ``SERVICE_PARSERS``, ``ENV``). Nor
has it one for a lone instance's create, show and delete, which
:mod:`trove_k2hdkc.instance` wraps for K2HR3 provisioning. A finder
at the front of ``sys.meta_path`` lets the normal finders locate those
modules, and wraps the loader so that, once the module's own code has run,
:mod:`trove_k2hdkc.extend` adds the k2hdkc entries to it. Nothing is
imported ahead of Trove and no file of Trove changes; a process that never
imports Trove pays one dictionary look-up per import.

This module uses the standard library only: it is imported at every
interpreter start through ``trove_k2hdkc.pth``.
"""

import os
import sys

#: Environment variable: ``1``/``all`` disables every part, a comma-separated
#: list of part names disables those.
DISABLE_ENV = "TROVE_K2HDKC_DISABLE"

#: Trove module -> the parts applied right after it is executed.
TARGETS = {
    "trove.common.constants": ("registry_ext",),
    "trove.common.cfg": ("options", "notification"),
    "trove.common.template": ("parser",),
    "trove.common.utils": ("templates",),
    "trove.instance.models": ("lone_instance_create",),
    "trove.instance.views": ("lone_instance_show",),
    "trove.taskmanager.manager": ("lone_instance_delete",),
}

#: Every part, in the order they apply.
PARTS = tuple(p for parts in TARGETS.values() for p in parts)

_applied = set()
_finder = None

#: Parts that raised, as ``(part, repr(exception))``; each is also logged.
errors = []


def disabled_parts(environ=None):
    """The parts the environment turns off."""
    value = (environ if environ is not None else os.environ).get(DISABLE_ENV, "")
    value = value.strip().lower()
    if value in ("", "0", "no", "false", "off"):
        return frozenset()
    if value in ("1", "yes", "true", "on", "all"):
        return frozenset(PARTS)
    return frozenset(p.strip() for p in value.split(",") if p.strip())


def applied():
    """The parts applied so far in this process."""
    return frozenset(part for _, part in _applied)


def _extend(name, module):
    off = disabled_parts()
    todo = [p for p in TARGETS[name] if p not in off and (name, p) not in _applied]
    if not todo:
        return
    from trove_k2hdkc import extend  # only now: it imports oslo/jinja helpers

    for part in todo:
        try:
            getattr(extend, part)(module)
        except Exception as exc:  # never take a Trove process down
            import logging

            errors.append((part, repr(exc)))
            logging.getLogger("trove_k2hdkc").error("trove-k2hdkc: could not extend %s (%s): %r", name, part, exc)
        else:
            _applied.add((name, part))


class _Loader(object):
    """Runs the real loader, then the extension; everything else delegates."""

    def __init__(self, inner, name):
        self._inner = inner
        self._name = name

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        _extend(self._name, module)

    def __getattr__(self, attr):
        return getattr(self._inner, attr)


class _Finder(object):
    """Finds nothing itself; wraps the loader other finders return."""

    def __init__(self):
        self._busy = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in TARGETS or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            spec = None
            for finder in list(sys.meta_path):
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader, fullname)
        return spec

    def invalidate_caches(self):
        pass


def install():
    """Installs the hook (once) and extends the target modules already
    loaded. Returns False when the environment disables every part."""
    global _finder
    if disabled_parts() >= frozenset(PARTS):
        return False
    if _finder is None:
        _finder = _Finder()
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    for name in TARGETS:
        module = sys.modules.get(name)
        if module is not None:
            _extend(name, module)
    return True
