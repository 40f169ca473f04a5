"""The extensions :mod:`trove_k2hdkc.hook` applies, one function per part.

Each takes the Trove module just executed and adds the k2hdkc entry to it;
each is idempotent and leaves an entry Trove (or the operator) already has.
"""

import logging

from trove_k2hdkc import MANAGER
from trove_k2hdkc import NOTIFICATION_SERVICE_ID
from trove_k2hdkc import REGISTRY_EXT
from trove_k2hdkc import TEMPLATES_DIR

LOG = logging.getLogger("trove_k2hdkc")


def registry_ext(constants):
    """``REGISTRY_EXT_DEFAULTS['k2hdkc']``: without it trove-manage
    datastore_version_update (no ``--registry-ext``) stores NULL into the
    NOT NULL column ``datastore_versions.registry_ext`` and fails."""
    constants.REGISTRY_EXT_DEFAULTS.setdefault(MANAGER, REGISTRY_EXT)


def options(cfg_module):
    """The ``[k2hdkc]`` group in Trove's ``CONF``."""
    from trove_k2hdkc import options as opts

    conf = cfg_module.CONF
    group = opts.group()
    conf.register_group(group)
    for opt in opts.build(cfg_module.ListOfPortsType):
        try:
            conf.register_opt(opt, group=group)
        except Exception as exc:  # DuplicateOptError: someone else's k2hdkc opt
            LOG.warning("trove-k2hdkc: [%s] %s kept as already registered (%s)", MANAGER, opt.dest, exc)


def notification(cfg_module):
    """A ``k2hdkc`` entry in the *default* of ``notification_service_id``
    (an operator who sets the option gives the whole map)."""
    conf = cfg_module.CONF
    defined = [o for o in getattr(cfg_module, "common_opts", ()) if o.dest == "notification_service_id"]
    current = dict((defined[0].default if defined else None) or {})
    if MANAGER not in current:
        current[MANAGER] = NOTIFICATION_SERVICE_ID
        conf.set_default("notification_service_id", current)


class K2hdkcConfParser(object):
    """Parses a rendered k2hdkc ``config.template`` (``name=value`` lines,
    ``#``/``;`` comments, optional ``[section]`` lines) into the items
    Trove's ``render_dict`` returns: ports as integers, ``None``/empty as
    None, other values as text."""

    def __init__(self, config):
        self.config = config

    def parse(self):
        from trove.common import stream_codecs

        lines = []
        for line in self.config.splitlines():
            text = line.strip()
            if text.startswith("[") and text.endswith("]"):
                continue
            lines.append(text)
        codec = stream_codecs.PropertiesCodec(delimiter="=", comment_markers=("#", ";"))
        return codec.deserialize("\n".join(lines) + "\n").items()


def parser(template_module):
    """``SERVICE_PARSERS['k2hdkc']``: used when Trove renders the defaults
    as a dict (instance configuration view, reset of a detached group)."""
    template_module.SERVICE_PARSERS.setdefault(MANAGER, K2hdkcConfParser)


def templates(utils_module):
    """The plugin's template directory, after ``template_path`` and Trove's
    packaged templates in the Jinja environment Trove renders with."""
    import jinja2

    env = utils_module.ENV
    current = env.loader
    for loader in getattr(current, "loaders", ()):
        if isinstance(loader, jinja2.FileSystemLoader) and TEMPLATES_DIR in loader.searchpath:
            return
    env.loader = jinja2.ChoiceLoader([current, jinja2.FileSystemLoader(TEMPLATES_DIR)])


def lone_instance_create(models):
    """``Instance.create``: K2HR3 objects for a lone instance
    (:mod:`trove_k2hdkc.instance`)."""
    from trove_k2hdkc import instance

    create = models.Instance.__dict__["create"].__func__
    models.Instance.create = classmethod(instance.wrap_create(create))


def lone_instance_show(views):
    """``InstanceDetailView.data``: a lone instance's slave EXTDATA URL."""
    from trove_k2hdkc import instance

    views.InstanceDetailView.data = instance.wrap_detail_data(views.InstanceDetailView.data)


def lone_instance_delete(manager):
    """The task manager's ``delete_instance``: a lone instance's K2HR3
    objects removed after it."""
    from trove_k2hdkc import instance

    manager.Manager.delete_instance = instance.wrap_delete(manager.Manager.delete_instance)
