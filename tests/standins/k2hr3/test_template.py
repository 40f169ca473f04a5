"""The K2HR3 stand-in renders k2hdkc.ini itself (k2hr3_standin.render_ini)
instead of running K2HR3's template engine on the template an operator
loads (packaging/k2hr3/k2hdkc-resource.k2hr3template). The box would then
test values no operator gets whenever one of the two changes alone; this
test fails on that drift: every fixed `KEY = VALUE` of the template's
[GLOBAL] and [K2HDKC] must be what the stand-in renders, and the stand-in
may render no fixed key the template lacks.

Run: .venv/bin/python -m pytest tests/standins/k2hr3 -q (tests/run does)
"""

import os
import re
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "..", "..", "..", "packaging", "k2hr3", "k2hdkc-resource.k2hr3template")
sys.path.insert(0, HERE)
import k2hr3_standin  # noqa: E402

KEY_VALUE = re.compile(r"^([A-Z0-9_]+)\s*=\s*(.*?)\s*$")
# Keys whose value is the stand-in's own by design: the ini's date. (The
# addresses, ports and names are template code there, so not compared.)
OWN = {"DATE"}


def fixed_sections(lines):
    """{section: {key: value}} of the lines that carry no template code;
    the per-node sections (SVRNODE/SLVNODE) are skipped."""
    out, section = {}, None
    for line in lines:
        if line.startswith("[") and line.strip() in ("[SVRNODE]", "[SLVNODE]"):
            section = None
            continue
        if line.startswith("[") and line.strip().endswith("]"):
            section = line.strip()[1:-1]
            out.setdefault(section, {})
            continue
        m = KEY_VALUE.match(line)
        if section and m and "{{" not in line:
            out[section][m.group(1)] = m.group(2)
    return out


def standin_ini():
    cfg = types.SimpleNamespace(started="now", role="c", automerge="off", threads=8, server_port=8020,
                                server_ctlport=8021, slave_ctlport=8031)
    return k2hr3_standin.render_ini(cfg, [{"ip": "10.0.0.1", "port": 8020, "cuk": "u", "tag": "t"}])


def drift(template_text, standin_text):
    """What differs: per section, (template, stand-in) values of the fixed
    keys that differ, and fixed keys only the stand-in renders."""
    template = fixed_sections(template_text.splitlines())
    standin = fixed_sections(standin_text.splitlines())
    templated = {m.group(1) for m in map(KEY_VALUE.match, template_text.splitlines()) if m}
    problems = []
    for section in ("GLOBAL", "K2HDKC"):
        want = {k: v for k, v in template.get(section, {}).items() if k not in OWN}
        got = {k: v for k, v in standin.get(section, {}).items() if k not in OWN}
        if not want:
            problems.append("[%s] not in the template" % section)
        problems += ["[%s] %s: template %r, stand-in %r" % (section, k, v, got.get(k))
                     for k, v in sorted(want.items()) if got.get(k) != v]
        problems += ["[%s] %s: only the stand-in renders it" % (section, k)
                     for k in sorted(set(got) - set(want) - templated)]
    return problems


def test_the_standin_renders_the_templates_fixed_values():
    with open(TEMPLATE) as f:
        template = f.read()
    assert drift(template, standin_ini()) == []
    # what was compared, so that an empty comparison cannot pass
    assert len(fixed_sections(template.splitlines())["GLOBAL"]) >= 20


def test_a_drift_is_caught():
    with open(TEMPLATE) as f:
        template = f.read()
    changed = standin_ini().replace("MQRETRYCNT             = 1000", "MQRETRYCNT             = 7")
    assert drift(template, changed) == ["[GLOBAL] MQRETRYCNT: template '1000', stand-in '7'"]
    added = standin_ini().replace("[K2HDKC]", "[K2HDKC]\nNEWKEY                 = 1")
    assert drift(template, added) == ["[K2HDKC] NEWKEY: only the stand-in renders it"]
