"""``python -m trove_k2hdkc k2hr3-cleanup`` (``trove_k2hdkc.cleanup``):
pending K2HR3 removals listed for the operator and finished with a
tenant's credentials. The command's set-up runs for real in a child
process on the trove-manage database; the removal runs in this process
with K2HR3's calls recorded (test_provisioning's fake). The whole path
against the K2HR3 stand-in and the box's real Keystone is in
tests/k2hr3-provisioning.
"""

import datetime
import io
import sqlite3
import subprocess
import sys
import uuid

from conftest import child_env

from test_cluster import ctx, trove  # noqa: F401
from test_provisioning import URL, k2hr3, rows, tctx  # noqa: F401


def cleanup_cmd(conf, *args, env=None):
    cmd = [sys.executable, "-m", "trove_k2hdkc", "k2hr3-cleanup", "--config-file", str(conf)] + list(args)
    clean = {k: v for k, v in child_env().items() if not k.startswith("OS_")}
    clean.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, env=clean, timeout=120)


def add_row(db_path, cluster_id, project, pending):
    con = sqlite3.connect(str(db_path))
    try:
        con.execute("insert into k2hdkc_k2hr3 (cluster_id, project_id, k2hr3_tenant, base, slave_extdata_url,"
                    " removal_pending, updated) values (?, ?, ?, ?, ?, ?, ?)",
                    (cluster_id, project, "tenant-" + project, "trove-k2hdkc-" + cluster_id, "secret-url",
                     1 if pending else 0, datetime.datetime(2026, 12, 1, 12, 0, 0).isoformat(" ")))
        con.commit()
    finally:
        con.close()


def test_the_command_lists_pending_removals_and_refuses_to_remove_without_credentials(trove_db, tmp_path):
    conf = trove_db["conf"]
    done = cleanup_cmd(conf, "--list")  # the table made on first use; other tests' rows may be there
    assert done.returncode == 0, done.stderr[-3000:]
    before = int(done.stdout.strip().splitlines()[-1].split()[0])
    a, b, gone = (str(uuid.uuid4()) for _ in range(3))
    add_row(trove_db["db"], a, "p-one", True)
    add_row(trove_db["db"], b, "p-two", True)
    add_row(trove_db["db"], gone, "p-one", False)  # a live cluster's objects: not pending
    done = cleanup_cmd(conf, "--list")
    assert done.returncode == 0, done.stderr[-3000:]
    listed = done.stdout.strip().splitlines()
    assert listed[-1] == "%d cluster(s) with K2HR3 objects left to remove" % (before + 2)
    assert any(line.startswith(a + "  project p-one  K2HR3 tenant tenant-p-one") for line in listed), listed
    assert any(line.startswith(b + "  project p-two") for line in listed), listed
    assert not any(gone in line for line in listed) and "secret-url" not in done.stdout

    # Removing needs provisioning configured, then a tenant's credentials.
    done = cleanup_cmd(conf)
    assert done.returncode == 2 and "k2hr3_provision_url is not set" in done.stderr, done.stderr[-3000:]
    with_url = tmp_path / "trove.conf"
    with_url.write_text(conf.read_text() + "\n[k2hdkc]\nk2hr3_provision_url = %s\n" % URL)
    done = cleanup_cmd(with_url, env={"OS_USERNAME": "demo"})
    assert done.returncode == 2, done.stderr[-3000:]
    assert "missing OS_AUTH_URL, OS_PASSWORD, OS_PROJECT_NAME or OS_PROJECT_ID" in done.stderr, done.stderr
    # A Keystone that cannot be reached is named; the password never shows.
    done = cleanup_cmd(with_url, env={"OS_AUTH_URL": "http://127.0.0.1:9/v3", "OS_USERNAME": "demo",
                                      "OS_PASSWORD": "pw-never-shown", "OS_PROJECT_NAME": "demo"})
    assert done.returncode == 2 and "Keystone (http://127.0.0.1:9/v3) could not be asked" in done.stderr, done.stderr
    assert "pw-never-shown" not in done.stdout + done.stderr
    # Usage without a configuration.
    usage = subprocess.run([sys.executable, "-m", "trove_k2hdkc", "k2hr3-cleanup"], capture_output=True,
                           text=True, env=child_env(), timeout=60)
    assert usage.returncode == 2 and "--config-file" in usage.stderr


def test_cleanup_removes_only_the_callers_pending_objects_and_says_what_is_left(tctx, k2hr3, monkeypatch):
    from trove_k2hdkc import cleanup
    from trove_k2hdkc import k2hr3 as client
    from trove_k2hdkc.cluster import provisioning

    mine = [str(uuid.uuid4()) for _ in range(2)]
    other = str(uuid.uuid4())
    with provisioning._engine().begin() as db:
        for cluster_id, project in [(mine[0], tctx.project_id), (mine[1], tctx.project_id), (other, "p-other")]:
            db.execute(provisioning.TABLE.insert().values(
                cluster_id=cluster_id, project_id=project, k2hr3_tenant="proj",
                base=provisioning.base_name(cluster_id), slave_extdata_url="u", removal_pending=True,
                updated=datetime.datetime.utcnow()))
    monkeypatch.setattr(cleanup, "_setup", lambda config_args: None)
    monkeypatch.setattr(cleanup, "keystone_token", lambda env: ("tenant-token", tctx.project_id))

    k2hr3.fail["remove"] = client.K2hr3Error("remove role x/server", "unreachable")
    out, err = io.StringIO(), io.StringIO()
    assert cleanup.main(["--config-file", "unused"], env={}, out=out, err=err) == 1
    left = [c for c in mine if c in rows()]
    assert len(left) == 1 and rows()[left[0]].removal_pending
    assert "%s: still pending" % left[0] in err.getvalue()
    assert "project %s: 1 removed, 1 still pending" % tctx.project_id in out.getvalue()

    out, err = io.StringIO(), io.StringIO()
    assert cleanup.main(["--config-file", "unused"], env={}, out=out, err=err) == 0, err.getvalue()
    assert "%s: K2HR3 objects removed" % left[0] in out.getvalue()
    assert not any(c in rows() for c in mine)
    assert rows()[other].removal_pending  # another project's: only its own tenant can remove them
    removes = [c for c in k2hr3.calls if c[0] == "remove"]
    assert {c[1] for c in removes} == {"tenant-token"}
    assert sorted(c[3] for c in removes) == sorted([provisioning.base_name(mine[0]), provisioning.base_name(mine[1]),
                                                    provisioning.base_name(left[0])])
