"""``python -m trove_k2hdkc``: where the files are, and whether the hook works.

    python -m trove_k2hdkc --rules      path of validation-rules.json
    python -m trove_k2hdkc --templates  the template directory
    python -m trove_k2hdkc --check      imports Trove and reports what the
                                        plugin added (exit 1 if incomplete)
    python -m trove_k2hdkc k2hr3-cleanup --config-file TROVE_CONF [--list]
                                        K2HR3 objects of deleted clusters
                                        left to remove (trove_k2hdkc.cleanup)
"""

import sys

import trove_k2hdkc
from trove_k2hdkc import hook


def check():
    from trove.common import cfg
    from trove.common import constants
    from trove.common import template
    from trove.common import utils
    # The lone-instance wraps: what trove-api and trove-taskmanager load.
    from trove.instance import models as instance_models  # noqa: F401
    from trove.instance import views as instance_views  # noqa: F401
    from trove.taskmanager import manager as taskmanager  # noqa: F401

    problems = []
    try:
        group = cfg.CONF.get(trove_k2hdkc.MANAGER)
        ports = ",".join(str(p[0]) if p[0] == p[-1] else "%d-%d" % (p[0], p[-1]) for p in group.tcp_ports)
        print("[%s] %d options, tcp_ports=%s mount_point=%s"
              % (trove_k2hdkc.MANAGER, len(list(group)), ports, group.mount_point))
    except Exception as exc:
        problems.append("option group: %r" % exc)
    ext = constants.REGISTRY_EXT_DEFAULTS.get(trove_k2hdkc.MANAGER)
    print("REGISTRY_EXT_DEFAULTS[%s] = %s" % (trove_k2hdkc.MANAGER, ext))
    if not ext:
        problems.append("no registry extension default")
    if trove_k2hdkc.MANAGER not in template.SERVICE_PARSERS:
        problems.append("no configuration parser")
    try:
        utils.ENV.get_template("%s/config.template" % trove_k2hdkc.MANAGER)
        print("config.template found")
    except Exception as exc:
        problems.append("config.template: %r" % exc)
    print("applied: %s" % ", ".join(p for p in hook.PARTS if p in hook.applied()))
    missing = [p for p in hook.PARTS if p not in hook.applied()]
    if missing:
        problems.append("not applied: %s" % ", ".join(missing))
    for problem in problems + ["%s: %s" % e for e in hook.errors]:
        print("problem: %s" % problem, file=sys.stderr)
    return 1 if problems or hook.errors else 0


def main(argv):
    if argv == ["--rules"]:
        print(trove_k2hdkc.VALIDATION_RULES)
        return 0
    if argv == ["--templates"]:
        print(trove_k2hdkc.TEMPLATES_DIR)
        return 0
    if argv == ["--check"]:
        return check()
    if argv[:1] == ["k2hr3-cleanup"]:
        from trove_k2hdkc import cleanup
        return cleanup.main(argv[1:])
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
