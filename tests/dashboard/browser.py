"""The Dashboard test's browser: headless Chromium driven with selenium, as
a K2HDKC tenant uses Horizon with trove-dashboard. Each step saves a
screenshot into --shots and asserts on the page's text; any failure names
the step and exits 1.

    browser.py --url URL --user demo --password-file F --shots DIR \\
        --config CONFIG_ID --network NET_ID [--version V] [--without-plugin]
        [--old-version V --old-config CONFIG_ID --upgrade-to V2 --upgraded-image IMAGE]

With --old-version the instance is launched on that version and upgraded
to --upgrade-to with Upgrade Instance; its containers must then run
--upgraded-image.

With --without-plugin it only logs in and opens Launch Cluster, where k2hdkc
must be offered: it fails there (exit 1) when the plugin is not installed,
which is what the test expects of that run.
"""

import argparse
import binascii
import re
import subprocess
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

DATASTORE = "k2hdkc"
#: Every member of a cluster has the same flavor (Trove refuses a grow
#: with another one).
FLAVOR = "k2hdkc.small"


class StepFailed(Exception):
    pass


class Tenant:
    def __init__(self, args):
        self.args = args
        self.url = args.url.rstrip("/")
        opts = webdriver.ChromeOptions()
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                  "--window-size=1400,1100", "--lang=en-US"):
            opts.add_argument(a)
        opts.binary_location = args.chromium
        self.d = webdriver.Chrome(service=Service(args.chromedriver), options=opts)
        self.d.set_page_load_timeout(120)
        self.n = 0
        self.started = time.time()

    def shot(self, name):
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-")
        self.n += 1
        path = "%s/%02d-%s.png" % (self.args.shots, self.n, name)
        self.d.save_screenshot(path)
        return path

    def text(self):
        return self.d.find_element(By.TAG_NAME, "body").text

    def step(self, name):
        print("==> %s  [+%.1fs]" % (name, time.time() - self.started), flush=True)

    def fail(self, step, why):
        path = self.shot("FAILED-" + step)
        raise StepFailed("%s: %s (screenshot %s)" % (step, why, path))

    def get(self, path):
        self.d.get(self.url + path)
        body = self.text()
        for bad in ("Traceback", "Server Error (500)", "Something went wrong"):
            if bad in body:
                self.fail(path, "the page shows %r" % bad)
        return body

    def wait_text(self, step, path, want, seconds, refresh=True):
        """Reloads PATH until every string of WANT is on it."""
        end = time.time() + seconds
        body = ""
        while time.time() < end:
            body = self.get(path) if refresh else self.text()
            if all(w in body for w in want):
                return body
            time.sleep(3)
        self.fail(step, "not seen within %ds: %s; the page says: %s"
                  % (seconds, [w for w in want if w not in body], body[-600:]))

    def field(self, name):
        return self.d.find_element(By.NAME, name)

    def select(self, name, value):
        """Sets a select as a user's choice does (also one on a workflow
        tab not shown yet), and fires its change event."""
        el = self.field(name)
        values = [o.get_attribute("value") for o in Select(el).options]
        if value not in values:
            self.fail("select-" + name, "%r is not offered (offered: %s)" % (value, values))
        self.d.execute_script(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));", el, value)

    def submit(self, field="name", seconds=60):
        """Submits the form that holds FIELD with its own submit button and
        waits (bounded) until the browser has left that form's page or
        shows the form again with errors."""
        form = self.field(field).find_element(By.XPATH, "./ancestor::form")
        buttons = form.find_elements(By.CSS_SELECTOR, "[type=submit]")
        if not buttons:
            self.fail("submit", "the form has no submit button")
        self.d.execute_script("arguments[0].click();", buttons[-1])
        end = time.time() + seconds
        while time.time() < end:
            time.sleep(0.5)
            try:
                form.is_displayed()  # stale once a new page loaded
            except StaleElementReferenceException:
                return
        self.fail("submit", "the form's page did not answer within %ds" % seconds)

    def form_errors(self):
        errs = [e.text for e in self.d.find_elements(
            By.CSS_SELECTOR, ".alert-danger, .error, .help-block.error, .has-error .help-block")
            if e.text.strip()]
        return errs

    # --- steps ---------------------------------------------------------------
    def login(self):
        self.step("log in as %s" % self.args.user)
        self.get("/auth/login/")
        self.field("username").send_keys(self.args.user)
        self.field("password").send_keys(open(self.args.password_file).read().strip())
        self.d.find_element(By.ID, "loginBtn").click()
        body = self.wait_text("login", "/project/databases/", ["Instances"], 60)
        if "Unauthorized" in body:
            self.fail("login", "not logged in")
        self.shot("logged-in")

    def datastore_value(self, select_name="datastore", version=None):
        """The option of k2hdkc (of VERSION, if given) in a datastore
        select (trove-dashboard hex-encodes "<datastore> - <version>")."""
        want = DATASTORE + " - " + (version or "")
        for o in Select(self.field(select_name)).options:
            try:
                label = binascii.unhexlify(o.get_attribute("value")).decode()
            except (binascii.Error, ValueError):
                label = o.text
            if (label == want) if version else label.startswith(want):
                return o.get_attribute("value")
        return None

    def pick_flavor(self, field):
        """FLAVOR in the flavor select FIELD."""
        opts = {o.text.strip(): o.get_attribute("value")
                for o in Select(self.field(field)).options if o.get_attribute("value")}
        if FLAVOR not in opts:
            self.fail("flavor", "%s is not offered for k2hdkc (offered: %s)" % (FLAVOR, sorted(opts)))
        self.select(field, opts[FLAVOR])

    def launch_instance(self, name, version=None, config=None):
        self.step("Launch Instance %s%s" % (name, " on " + version if version else ""))
        self.get("/project/databases/launch")
        version = version or self.args.version or None
        ds = self.datastore_value(version=version)
        if not ds:
            self.fail("launch-instance", "k2hdkc %sis not offered in Launch Instance" % (version + " " if version else ""))
        self.field("name").send_keys(name)
        self.select("datastore", ds)
        self.pick_flavor(ds)
        self.d.execute_script("arguments[0].value = '1';", self.field("volume"))
        # Networking: the box's network.
        for box in self.d.find_elements(By.CSS_SELECTOR, "input[name=network]"):
            if box.get_attribute("value") == self.args.network and not box.is_selected():
                self.d.execute_script("arguments[0].click();", box)
        self.select("config", config or self.args.config)
        self.shot("launch-instance-form")
        self.submit()
        time.sleep(2)
        if "/launch" in self.d.current_url and self.form_errors():
            self.fail("launch-instance", "the form says: %s" % self.form_errors())
        body = self.wait_text("instance-active", "/project/databases/",
                              [name, "Active", "Healthy"], self.args.timeout)
        self.shot("instance-active")
        return body

    def instance_overview(self, name):
        self.step("instance %s: Overview tab" % name)
        self.get("/project/databases/")
        link = self.d.find_element(By.LINK_TEXT, name)
        self.d.execute_script("arguments[0].click();", link)
        body = self.wait_text("instance-overview", "", ["K2HR3 EXTDATA URL", "Cluster Name",
                                                        "Server Port", "/extdata/***"], 60,
                              refresh=False)
        self.shot("instance-overview")
        if "extdata/" in body and "***" not in body.split("K2HR3 EXTDATA URL", 1)[1][:200]:
            self.fail("instance-overview", "the EXTDATA URL is shown unmasked")

    def row_action(self, step, name, action):
        """The link of ACTION in NAME's row (or its drop-down), clicked."""
        row = self.d.find_element(By.XPATH, "//tr[.//a[normalize-space()='%s']]" % name)
        link = row.find_elements(By.XPATH, ".//a[contains(., '%s')]" % action)
        if not link:
            toggles = row.find_elements(By.CSS_SELECTOR, ".dropdown-toggle")
            if toggles:
                self.d.execute_script("arguments[0].click();", toggles[0])
            link = row.find_elements(By.XPATH, ".//a[contains(., '%s')]" % action)
        if not link:
            self.fail(step, "no %s action for k2hdkc" % action)
        self.d.execute_script("arguments[0].click();", link[0])

    def upgrade_instance(self, name, version, image):
        """Upgrade Instance (trove-dashboard's row action) to VERSION: the
        status leaves Active while the guest works, comes back Active and
        Healthy on VERSION, and the guest's containers run IMAGE."""
        self.step("Upgrade Instance %s to %s (row action)" % (name, version))
        self.get("/project/databases/")
        iid = self.d.find_element(By.LINK_TEXT, name).get_attribute("href").rstrip("/").rsplit("/", 1)[-1]
        self.row_action("upgrade-instance", name, "Upgrade Instance")
        end = time.time() + 30
        while time.time() < end and not self.d.find_elements(By.NAME, "new_datastore_version"):
            time.sleep(0.5)
        field = self.field("new_datastore_version")
        offered = {o.text.strip(): o.get_attribute("value") for o in Select(field).options}
        if version not in offered:
            self.fail("upgrade-instance", "%s is not offered (offered: %s)" % (version, sorted(offered)))
        self.select("new_datastore_version", offered[version])
        self.shot("upgrade-instance-form")
        self.submit("new_datastore_version")
        seen = set()
        end = time.time() + self.args.timeout
        while time.time() < end:
            self.get("/project/databases/")
            row = self.d.find_element(By.XPATH, "//tr[.//a[normalize-space()='%s']]" % name).text
            state = "Active" if ("Active" in row and "Healthy" in row) else "other"
            seen.add(state)
            if state == "Active" and "other" in seen and version in row:
                break
            time.sleep(2)
        else:
            self.fail("upgrade-instance", "not back Active/Healthy on %s within %ds (seen: %s; row: %s)"
                      % (version, self.args.timeout, sorted(seen), row))
        self.shot("instance-upgraded")
        ran = subprocess.run(["docker", "inspect", "-f", "{{.Config.Image}}",
                              "k2hdkc-chmpx-" + iid, "k2hdkc-server-" + iid],
                             capture_output=True, text=True, timeout=60)
        images = set(ran.stdout.split())
        if ran.returncode != 0 or images != {image}:
            self.fail("upgrade-instance", "its containers run %s, not %s (%s)"
                      % (sorted(images), image, ran.stderr.strip()))
        print("    Active/Healthy on %s, its containers on %s" % (version, image), flush=True)

    def delete_instance(self, name):
        self.step("Delete Instance %s (table action)" % name)
        self.get("/project/databases/")
        row = self.d.find_element(By.XPATH, "//tr[.//a[normalize-space()='%s']]" % name)
        box = row.find_element(By.CSS_SELECTOR, "input[type=checkbox]")
        self.d.execute_script("arguments[0].click();", box)
        btn = self.d.find_element(By.XPATH, "//button[contains(., 'Delete Instance')]")
        self.d.execute_script("arguments[0].click();", btn)
        time.sleep(1)
        confirm = [b for b in self.d.find_elements(
            By.XPATH, "//div[contains(@class,'modal')]//*[self::a or self::button][contains(., 'Delete Instance')]")
            if b.is_displayed()]
        if not confirm:
            self.fail("delete-instance", "no confirmation")
        self.d.execute_script("arguments[0].click();", confirm[0])
        end = time.time() + self.args.timeout
        while time.time() < end:
            if name not in self.get("/project/databases/"):
                self.shot("instance-deleted")
                return
            time.sleep(3)
        self.fail("delete-instance", "%s still listed after %ds" % (name, self.args.timeout))

    def open_launch_cluster(self):
        self.step("Launch Cluster: is k2hdkc offered?")
        self.get("/project/database_clusters/launch")
        self.shot("launch-cluster-form")
        try:
            ds = self.datastore_value(version=self.args.version or None)
        except NoSuchElementException:
            self.fail("launch-cluster", "k2hdkc is not offered in Launch Cluster (no form: %s)"
                      % self.text()[-300:])
        if not ds:
            self.fail("launch-cluster", "k2hdkc is not offered in Launch Cluster")
        return ds

    def launch_cluster(self, name, count):
        ds = self.open_launch_cluster()
        self.step("Launch Cluster %s without a configuration group: refused in the form" % name)
        self.field("name").send_keys(name)
        self.select("datastore", ds)
        self.pick_flavor(ds)
        self.select("network", self.args.network)
        n = self.field("num_instances")
        n.clear()
        n.send_keys(str(count))
        self.submit()
        time.sleep(2)
        body = self.text()
        if "configuration group with the K2HR3 values" not in body:
            self.fail("launch-cluster-no-config", "no message about the configuration group")
        self.shot("launch-cluster-needs-configuration")
        config = self.args.cluster_config or self.args.config
        self.step("Launch Cluster %s (%d members) with the configuration group %s" % (name, count, config))
        self.select("configuration", config)
        # The form was re-rendered: flavor and datastore again.
        self.select("datastore", ds)
        self.pick_flavor(ds)
        self.submit()
        time.sleep(2)
        if "/launch" in self.d.current_url and self.form_errors():
            self.fail("launch-cluster", "the form says: %s" % self.form_errors())
        # Horizon shows Trove's refusal as a message on the next page.
        refused = [e for e in self.form_errors() if "Unable" in e]
        if refused:
            self.fail("launch-cluster", "Horizon says: %s" % refused)
        self.wait_cluster(name, count, "cluster-active")

    def cluster_id(self, name):
        self.get("/project/database_clusters/")
        link = self.d.find_element(By.LINK_TEXT, name)
        return link.get_attribute("href").rstrip("/").rsplit("/", 1)[-1]

    def wait_cluster(self, name, count, step):
        end = time.time() + self.args.timeout
        cid = None
        while time.time() < end:
            self.get("/project/database_clusters/")
            try:
                row = self.d.find_element(By.XPATH, "//tr[.//a[normalize-space()='%s']]" % name)
            except NoSuchElementException:
                time.sleep(3)
                continue
            cells = row.text
            if "None" in cells and ("%d instances" % count) in cells:
                cid = self.cluster_id(name)
                break
            time.sleep(3)
        if not cid:
            self.fail(step, "cluster %s not idle with %d instances within %ds" % (name, count, self.args.timeout))
        # Every member Active.
        self.wait_text(step, "/project/database_clusters/%s/?tab=cluster_details__instances_tab" % cid,
                       ["Active"], self.args.timeout)
        body = self.text()
        if "Build" in body or "Error" in body:
            self.wait_text(step, "/project/database_clusters/%s/?tab=cluster_details__instances_tab" % cid,
                           ["Active"], self.args.timeout)
        self.shot(step)
        self.member_hosts(step, count)
        return cid

    def member_hosts(self, step, count):
        """The Host column of the cluster's Instances tab (on screen now):
        one address list per member. trove-dashboard alone printed Trove
        26's address dicts there."""
        table = self.d.find_element(By.CSS_SELECTOR, "table#instances")
        heads = [h.text.strip() for h in table.find_elements(By.CSS_SELECTOR, "thead th.normal_column")]
        if "Host" not in heads:
            self.fail(step, "the Instances tab has no Host column (columns: %s)" % heads)
        col = heads.index("Host")
        cells = [row.find_elements(By.CSS_SELECTOR, "td.normal_column")[col].text.strip()
                 for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        address = r"\d{1,3}(\.\d{1,3}){3}"
        bad = [c for c in cells if not re.fullmatch(r"%s(, %s)*" % (address, address), c)]
        if len(cells) != count or bad:
            self.fail(step, "Host column of %d members: %s (not an address: %s)" % (count, cells, bad))
        print("    members' Host: %s" % ", ".join(cells), flush=True)
        return cells

    def grow(self, name, count):
        self.step("Grow Cluster %s by one (table action)" % name)
        self.get("/project/database_clusters/")
        row = self.d.find_element(By.XPATH, "//tr[.//a[normalize-space()='%s']]" % name)
        grow = row.find_elements(By.XPATH, ".//a[contains(., 'Grow Cluster')]")
        if not grow:
            # In the row's drop-down.
            toggles = row.find_elements(By.CSS_SELECTOR, ".dropdown-toggle")
            if toggles:
                toggles[0].click()
            grow = row.find_elements(By.XPATH, ".//a[contains(., 'Grow Cluster')]")
        if not grow:
            self.fail("grow", "no Grow Cluster action for k2hdkc")
        self.d.execute_script("arguments[0].click();", grow[0])
        self.wait_text("grow", "", ["Add Instance"], 30, refresh=False)
        cid = self.d.current_url.rstrip("/").split("/")[-2]
        self.get("/project/database_clusters/%s/add_instance" % cid)
        self.pick_flavor("flavor")
        self.field("name").send_keys("%s-grown" % name)
        self.select("network", self.args.network)
        self.shot("grow-add-instance")
        self.submit()
        time.sleep(2)
        if self.form_errors():
            self.fail("grow-add-instance", "the form says: %s" % self.form_errors())
        # Back on the grow page (as Horizon redirects), the new member listed.
        self.wait_text("grow", "", ["%s-grown" % name], 10, refresh=False)
        self.shot("grow-pending")
        btn = self.d.find_element(By.XPATH, "//button[contains(., 'Grow Cluster')]")
        self.d.execute_script("arguments[0].click();", btn)
        time.sleep(2)
        self.wait_cluster(name, count + 1, "cluster-grown")

    def shrink(self, name, count):
        self.step("Shrink Cluster %s by one (table action)" % name)
        cid = self.cluster_id(name)
        self.get("/project/database_clusters/%s/cluster_shrink_details" % cid)
        boxes = self.d.find_elements(By.CSS_SELECTOR, "tbody input[type=checkbox]")
        if not boxes:
            self.fail("shrink", "no member to choose")
        self.d.execute_script("arguments[0].click();", boxes[-1])
        self.shot("shrink-choose")
        btn = self.d.find_element(By.XPATH, "//button[contains(., 'Shrink Cluster')]")
        self.d.execute_script("arguments[0].click();", btn)
        time.sleep(1)
        confirm = [b for b in self.d.find_elements(By.XPATH, "//div[contains(@class,'modal')]//a[contains(., 'Shrink Cluster')] | //div[contains(@class,'modal')]//button[contains(., 'Shrink Cluster')]") if b.is_displayed()]
        if confirm:
            self.d.execute_script("arguments[0].click();", confirm[0])
        time.sleep(2)
        self.wait_cluster(name, count - 1, "cluster-shrunk")

    def cluster_overview(self, name):
        self.step("cluster %s: Overview tab" % name)
        cid = self.cluster_id(name)
        body = self.wait_text("cluster-overview", "/project/database_clusters/%s/" % cid,
                              ["K2HR3 EXTDATA URL", "Members", "/extdata/***", "10.213.0."], 60)
        self.shot("cluster-overview")
        if self.args.cluster_config:
            self.slave_url_on_request()
        return body

    def slave_url_on_request(self):
        """A cluster whose K2HR3 objects Trove made: the Overview names
        the application hosts' EXTDATA URL masked, and whole only once
        asked for."""
        self.step("the Overview's slave EXTDATA URL: masked, whole on request")
        body = self.text()
        if "Slave EXTDATA URL" not in body:
            self.fail("slave-url", "the Overview does not show the application hosts' EXTDATA URL")
        full = self.d.find_element(By.ID, "k2hdkc-slave-url-full")
        whole = full.get_attribute("textContent").strip()
        if "/v1/extdata/trove/" not in whole or whole.endswith("***"):
            self.fail("slave-url", "the page holds no slave EXTDATA URL: [%s]" % whole)
        token = whole.rsplit("/", 1)[1]
        masked = self.d.find_element(By.ID, "k2hdkc-slave-url-masked").text
        if not masked.endswith("/extdata/***") or token in body or full.is_displayed():
            self.fail("slave-url", "the token shows before it is asked for (masked: [%s])" % masked)
        self.d.find_element(By.CSS_SELECTOR, "#k2hdkc-slave-url-reveal summary").click()
        time.sleep(0.5)
        if not full.is_displayed() or token not in self.text():
            self.fail("slave-url", "Show does not reveal the URL")
        self.shot("cluster-overview-slave-url")
        print("    slave EXTDATA URL: %s on the page, whole on request" % masked)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--user", default="demo")
    p.add_argument("--password-file", required=True)
    p.add_argument("--shots", required=True)
    p.add_argument("--config", default="")
    p.add_argument("--cluster-config", default="",
                   help="the configuration group for Launch Cluster (default --config): one that "
                        "names only a cluster, whose K2HR3 objects Trove makes")
    p.add_argument("--network", default="")
    p.add_argument("--timeout", type=int, default=300)
    p.add_argument("--version", default="",
                   help="the k2hdkc version to launch (default: the first offered)")
    p.add_argument("--without-plugin", action="store_true")
    p.add_argument("--old-version", default="",
                   help="launch the instance on this version, then Upgrade Instance")
    p.add_argument("--old-config", default="", help="the configuration group of --old-version")
    p.add_argument("--upgrade-to", default="")
    p.add_argument("--upgraded-image", default="")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = p.parse_args()
    t = Tenant(args)
    try:
        t.login()
        if args.without_plugin:
            t.open_launch_cluster()
            print("k2hdkc is offered in Launch Cluster")
            return 0
        if args.old_version:
            t.launch_instance("k2hdkc-dash-1", args.old_version, args.old_config)
            t.instance_overview("k2hdkc-dash-1")
            t.upgrade_instance("k2hdkc-dash-1", args.upgrade_to, args.upgraded_image)
        else:
            t.launch_instance("k2hdkc-dash-1")
            t.instance_overview("k2hdkc-dash-1")
        # One K2HR3 role in the box: the instance leaves it before the
        # cluster forms its ring there.
        t.delete_instance("k2hdkc-dash-1")
        t.launch_cluster("k2hdkc-dash-c", 3)
        t.cluster_overview("k2hdkc-dash-c")
        t.grow("k2hdkc-dash-c", 3)
        t.shrink("k2hdkc-dash-c", 4)
        t.cluster_overview("k2hdkc-dash-c")
        print("dashboard: every step passed (%.1fs)" % (time.time() - t.started))
        return 0
    except StepFailed as e:
        print("dashboard: FAILED at %s" % e, file=sys.stderr)
        return 1
    finally:
        t.d.quit()


if __name__ == "__main__":
    sys.exit(main())
