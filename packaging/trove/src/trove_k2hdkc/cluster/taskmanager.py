"""trove-taskmanager side of k2hdkc clusters (``[k2hdkc]
taskmanager_strategy``): the ring steps, member by member, in the order
that kept every key in the measurements of CONTRACTS.md §7 (``AUTOMERGE``
off, an explicit merge after each membership change).

- create: all members ready; each member's CUK; every k2hdkc.ini lists all
  CUKs; ``SERVICEIN`` on each; a merge from the first; ``cluster_complete``.
- grow: the new members ready; every ini (old and new) lists all CUKs;
  ``SERVICEIN`` on the new; k2hdkc reattached on the old (pending); a merge
  from an old member; ``cluster_complete`` on the new.
- shrink: ``SERVICEOUT`` of each leaving member, sent by a remaining one;
  reattach on the remaining; a merge from a remaining member; then each
  leaving member leaves K2HR3 and stops (``stop_db``); the remaining inis
  list only the remaining CUKs. Only then are the leaving instances
  deleted. A failure before that deletes nothing. A leaving member the
  ring never had (its prepare failed: a grow's failed member) has no key
  to hand over: no ``SERVICEOUT`` and no merge for it.
- restart: one member at a time, each back to ``HEALTHY`` before the next.
- upgrade: as restart, each member on the new datastore version (the
  agent's ``upgrade``); a member that fails stops the rollout, the others
  untouched. A repeated upgrade skips the members already on the version.

Every wait has a bound: a merge ``cluster_merge_timeout``, any other step
``cluster_member_timeout`` (both ``[k2hdkc]``), members getting ready
Trove's ``usage_timeout``, deletion ``cluster_delete_time_out``, and a
whole operation ``cluster_usage_timeout``. Each step is logged with its
duration. A failure is logged with the step, the member and the cause.
The members then get the error task (Trove has error tasks for
instances, not for clusters): ``BUILDING_ERROR_SERVER`` for create,
``GROWING_ERROR`` for grow (the new members and the one a step failed
on: the others serve on), ``SHRINKING_ERROR`` for shrink; the member a
step failed on gets an instance fault naming the step and cause. The cluster
task goes back to ``NONE``, so that the cluster can be deleted, or the
operation repeated, and so that Trove refuses to delete its members one
by one.
"""

import contextlib
import time

from oslo_log import log as logging

from trove.common import cfg
from trove.common import clients
from trove.common.exception import PollTimeOut
from trove.common.notification import DBaaSInstanceUpgrade
from trove.common.notification import StartNotification
from trove.common.strategies.cluster import base
from trove.common import utils
from trove.cluster.models import DBCluster
from trove.instance import models as inst_models
from trove.instance.models import DBInstance
from trove.instance.models import InstanceServiceStatus
from trove.instance.service_status import ServiceStatuses
from trove.instance.tasks import InstanceTasks
from trove.taskmanager import api as task_api
from trove.taskmanager import models as task_models

from trove_k2hdkc import MIN_CLUSTER_MEMBERS
from trove_k2hdkc.cluster import guestagent
from trove_k2hdkc.cluster import provisioning

LOG = logging.getLogger(__name__)
CONF = cfg.CONF

#: Service statuses that end a wait at once.
FAILED_STATUSES = (ServiceStatuses.FAILED,
                   ServiceStatuses.FAILED_TIMEOUT_GUESTAGENT)


class RingStepFailed(Exception):
    """One ring step failed: which, on which member, why."""

    def __init__(self, step, member, cause):
        self.step = step
        self.member = member
        self.cause = cause
        super(RingStepFailed, self).__init__(
            "%s on member %s: %s" % (step, member, cause))


class Deadline(object):
    """The bound of a whole operation (``cluster_usage_timeout``)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def check(self, step, member):
        if time.monotonic() > self.end:
            raise RingStepFailed(step, member, "cluster_usage_timeout (%ss) "
                                 "passed before this step" % self.seconds)


def _short(value, limit=300):
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


class K2hdkcTaskManagerStrategy(base.BaseTaskManagerStrategy):

    @property
    def task_manager_api_class(self):
        # Trove's own casts carry everything (grow_cluster with the new
        # instance IDs, shrink_cluster with the leaving ones).
        return task_api.API

    @property
    def task_manager_cluster_tasks_class(self):
        return K2hdkcClusterTasks


class K2hdkcClusterTasks(task_models.ClusterTasks):

    def delete_cluster(self, context, cluster_id):
        """Trove's delete (it waits for every member to be deleted), then
        the K2HR3 objects the plugin made for the cluster, with the
        deleting tenant's token: no member is registered any more."""
        super(K2hdkcClusterTasks, self).delete_cluster(context, cluster_id)
        if DBCluster.find_by(id=cluster_id).deleted:
            provisioning.remove(context, cluster_id)

    # --- helpers -----------------------------------------------------------

    @staticmethod
    def _member_ids(cluster_id):
        return [m.id for m in DBInstance.find_all(cluster_id=cluster_id,
                                                  deleted=False).all()]

    def _guest(self, context, instance_id):
        return clients.create_guest_client(context, instance_id,
                                           self.ds_version.manager)

    def _ring(self, context, deadline, member, method, **kwargs):
        """Runs guest method ``method`` on ``member``; logs how long it
        took; any error becomes :class:`RingStepFailed`."""
        deadline.check(method, member)
        LOG.info("k2hdkc cluster %(c)s: %(m)s on member %(i)s.",
                 {"c": self.id, "m": method, "i": member})
        started = time.monotonic()
        try:
            result = getattr(self._guest(context, member), method)(**kwargs)
        except Exception as exc:
            LOG.error("k2hdkc cluster %(c)s: %(m)s on member %(i)s failed "
                      "after %(s).1fs: %(e)s",
                      {"c": self.id, "m": method, "i": member,
                       "s": time.monotonic() - started, "e": exc})
            raise RingStepFailed(method, member, exc)
        LOG.info("k2hdkc cluster %(c)s: %(m)s on member %(i)s took "
                 "%(s).1fs: %(r)s",
                 {"c": self.id, "m": method, "i": member,
                  "s": time.monotonic() - started, "r": _short(result)})
        return result

    def _cuks(self, context, deadline, members):
        """Each member's CUK, from the member itself."""
        answers = self._ring_statuses(context, deadline, members)
        return {member: answer["cuk"] for member, answer in answers.items()}

    def _ring_statuses(self, context, deadline, members):
        """Each member's ``k2hdkc_ring_status`` answer: its CUK, and its
        ring unless it has none (``error``: a member whose prepare
        failed). Two members with one CUK fail the step."""
        answers = {}
        for member in members:
            answer = self._ring(context, deadline, member,
                                "k2hdkc_ring_status")
            cuk = answer.get("cuk") if isinstance(answer, dict) else None
            if not cuk:
                raise RingStepFailed("k2hdkc_ring_status", member,
                                     "no CUK in the answer %s" % _short(answer))
            answers[member] = answer
        seen = {}
        for member, answer in answers.items():
            cuk = answer["cuk"]
            if cuk in seen:
                raise RingStepFailed(
                    "k2hdkc_ring_status", member,
                    "member %s reports the same CUK %s" % (seen[cuk], cuk))
            seen[cuk] = member
        return answers

    @staticmethod
    def _never_joined(answers, leaving, remaining):
        """The leaving members the ring never had: no ring of their own
        (their prepare failed) and no remaining member lists their CUK.
        They hold no key, so they need no SERVICEOUT and no merge."""
        known = set()
        for member in remaining:
            answer = answers[member]
            known.update(answer.get("ini_cuks") or [])
            known.update(s.get("cuk") for s in answer.get("servers") or [])
        return [m for m in leaving
                if answers[m].get("error") and answers[m]["cuk"] not in known]

    @staticmethod
    def _states(members):
        """``id: service status, task`` of each member, for the log."""
        out = []
        for member in members:
            try:
                status = InstanceServiceStatus.find_by(
                    instance_id=member).get_status()
                task = DBInstance.find_by(id=member).get_task_status()
                out.append("%s: %s, task %s" % (member, status.description,
                                                 task.db_text))
            except Exception as exc:
                out.append("%s: %s" % (member, exc))
        return "; ".join(out)

    def _ready(self, members, cluster_id):
        """Trove's wait for INSTANCE_READY (bounded by ``usage_timeout``;
        on failure Trove has marked the members already)."""
        LOG.info("k2hdkc cluster %s: waiting for members %s to be ready.",
                 cluster_id, members)
        started = time.monotonic()
        if self._all_instances_ready(members, cluster_id):
            LOG.info("k2hdkc cluster %s: members ready after %.1fs.",
                     cluster_id, time.monotonic() - started)
            return True
        LOG.error("k2hdkc cluster %s: not every member got ready after "
                  "%.1fs: %s", cluster_id, time.monotonic() - started,
                  self._states(members))
        return False

    def _failed(self, operation, cluster_id, exc, status=None,
                members=None):
        """Logs the failure and marks members with the error task: every
        member, or only ``members`` and the one the step failed on. The
        failing member's fault (``instance show``) names the step and
        the cause."""
        if isinstance(exc, RingStepFailed):
            LOG.error("k2hdkc cluster %(c)s: %(o)s failed at %(s)s on "
                      "member %(m)s: %(e)s",
                      {"c": cluster_id, "o": operation, "s": exc.step,
                       "m": exc.member, "e": exc.cause})
            inst_models.save_instance_fault(
                exc.member, "k2hdkc cluster %s failed at %s: %s"
                % (operation, exc.step, _short(exc.cause, 200)),
                str(exc))
        else:
            LOG.exception("k2hdkc cluster %s: %s failed: %s", cluster_id,
                          operation, exc)
        if members is None:
            self.update_statuses_on_failure(cluster_id, status=status)
            return
        marked = list(members)
        if isinstance(exc, RingStepFailed) and exc.member not in marked:
            marked.append(exc.member)
        self._mark(marked, status or InstanceTasks.BUILDING_ERROR_SERVER)

    # --- create -------------------------------------------------------------

    def _join(self, context, deadline, old, new):
        """The ring steps that bring `new` members into a ring of `old`
        ones (none at create): every member converges on one member
        list, each new one enters service, the old ones take the new ini,
        one merge for the whole ring, then each new member completes."""
        everyone = old + new
        cuks = self._cuks(context, deadline, everyone)
        wanted = [cuks[m] for m in everyone]
        for member in everyone:
            self._ring(context, deadline, member, "k2hdkc_ring_converge",
                       cuks=wanted)
        for member in new:
            self._ring(context, deadline, member, "k2hdkc_ring_service_in")
        for member in old:
            self._ring(context, deadline, member, "k2hdkc_ring_reattach")
        self._ring(context, deadline, everyone[0], "k2hdkc_ring_merge")
        for member in new:
            self._ring(context, deadline, member, "cluster_complete")

    def create_cluster(self, context, cluster_id):
        LOG.info("k2hdkc cluster %s: create begins.", cluster_id)
        started = time.monotonic()
        deadline = Deadline(CONF.cluster_usage_timeout)
        try:
            members = self._member_ids(cluster_id)
            if not self._ready(members, cluster_id):
                return
            self._join(context, deadline, [], members)
            LOG.info("k2hdkc cluster %s: created with %d members in %.1fs.",
                     cluster_id, len(members), time.monotonic() - started)
        except Exception as exc:
            self._failed("create", cluster_id, exc)
        finally:
            self.reset_task()

    # --- grow ---------------------------------------------------------------

    def _begin(self, action, cluster_id, instance_ids):
        """Logs that `action` begins; returns its clock, its deadline and
        the instances it names, each once."""
        LOG.info("k2hdkc cluster %s: %s by %s begins.", cluster_id, action,
                 instance_ids)
        return (time.monotonic(), Deadline(CONF.cluster_usage_timeout),
                list(dict.fromkeys(instance_ids)))

    def _members_with(self, action, cluster_id, named):
        """The cluster's members, once every instance `named` is one."""
        members = self._member_ids(cluster_id)
        missing = [m for m in named if m not in members]
        if missing:
            raise RingStepFailed(action, ",".join(missing),
                                 "not members of the cluster")
        return members

    def grow_cluster(self, context, cluster_id, new_instance_ids):
        started, deadline, new = self._begin("grow", cluster_id,
                                             new_instance_ids)
        try:
            members = self._members_with("grow", cluster_id, new)
            old = [m for m in members if m not in new]
            if not old:
                raise RingStepFailed("grow", "-", "no existing member")
            before = self._tasks(old)
            if not self._ready(new, cluster_id):
                # Trove's wait marked every member; the ring is untouched
                # and the old members serve on: only the new ones failed.
                self._restore(before)
                self._mark(new, InstanceTasks.GROWING_ERROR)
                LOG.error("k2hdkc cluster %s: grow stopped before any ring "
                          "step; shrink the failed members %s away.",
                          cluster_id, new)
                return
            self._join(context, deadline, old, new)
            LOG.info("k2hdkc cluster %s: grown to %d members in %.1fs.",
                     cluster_id, len(old + new), time.monotonic() - started)
        except Exception as exc:
            self._failed("grow", cluster_id, exc,
                         status=InstanceTasks.GROWING_ERROR,
                         members=new)
        finally:
            self.reset_task()

    # --- shrink -------------------------------------------------------------

    def shrink_cluster(self, context, cluster_id, instance_ids):
        started, deadline, wanted_out = self._begin("shrink", cluster_id,
                                                    instance_ids)
        try:
            members = self._members_with("shrink", cluster_id, wanted_out)
            leaving = [m for m in members if m in wanted_out]
            remaining = [m for m in members if m not in wanted_out]
            if len(remaining) < MIN_CLUSTER_MEMBERS:
                raise RingStepFailed(
                    "shrink", ",".join(leaving),
                    "%d members would remain; K2HDKC needs %d (REPLICA = 1)"
                    % (len(remaining), MIN_CLUSTER_MEMBERS))
            answers = self._ring_statuses(context, deadline,
                                          remaining + leaving)
            for member in remaining:
                if answers[member].get("error"):
                    raise RingStepFailed(
                        "k2hdkc_ring_status", member,
                        "a remaining member has no ring: %s"
                        % answers[member]["error"])
            cuks = {m: answers[m]["cuk"] for m in answers}
            outside = self._never_joined(answers, leaving, remaining)
            if outside:
                LOG.info("k2hdkc cluster %s: %s never joined the ring (%s): "
                         "nothing to hand over.", cluster_id, outside,
                         "; ".join(_short(answers[m]["error"], 120)
                                   for m in outside))
            in_ring = [m for m in leaving if m not in outside]
            via = remaining[0]
            for member in in_ring:
                self._ring(context, deadline, via, "k2hdkc_ring_service_out",
                           cuk=cuks[member])
            if in_ring:
                for member in remaining:
                    self._ring(context, deadline, member,
                               "k2hdkc_ring_reattach")
                self._ring(context, deadline, via, "k2hdkc_ring_merge")
            for member in leaving:
                self._ring(context, deadline, member, "stop_db_for_removal")
            wanted = [cuks[m] for m in remaining]
            for member in remaining:
                self._ring(context, deadline, member, "k2hdkc_ring_converge",
                           cuks=wanted)
        except Exception as exc:
            LOG.error("k2hdkc cluster %s: shrink stopped before deleting "
                      "any member; %s keep running.", cluster_id, wanted_out)
            self._failed("shrink", cluster_id, exc,
                         status=InstanceTasks.SHRINKING_ERROR)
            self.reset_task()
            return

        try:
            self._delete_members(context, cluster_id, leaving)
            LOG.info("k2hdkc cluster %s: shrunk to %d members in %.1fs.",
                     cluster_id, len(remaining), time.monotonic() - started)
        except Exception as exc:
            LOG.error("k2hdkc cluster %s: the ring no longer holds %s, but "
                      "deleting them failed: %s", cluster_id, leaving, exc)
            self._mark(leaving, InstanceTasks.SHRINKING_ERROR)
        finally:
            self.reset_task()

    def _delete_members(self, context, cluster_id, leaving):
        """Deletes the instances (the cluster task is SHRINKING_CLUSTER, so
        Trove lets them go) and waits until they are marked deleted."""
        for member in leaving:
            LOG.info("k2hdkc cluster %s: deleting member %s.", cluster_id,
                     member)
            inst_models.load_any_instance(context, member).delete()

        def gone():
            return not set(leaving) & set(self._member_ids(cluster_id))

        started = time.monotonic()
        try:
            utils.poll_until(gone, sleep_time=2,
                             time_out=CONF.cluster_delete_time_out)
        except PollTimeOut:
            raise RingStepFailed(
                "delete", ",".join(leaving),
                "not deleted after cluster_delete_time_out (%ss)"
                % CONF.cluster_delete_time_out)
        LOG.info("k2hdkc cluster %s: members %s deleted after %.1fs.",
                 cluster_id, leaving, time.monotonic() - started)

    @staticmethod
    def _tasks(members):
        return {m: DBInstance.find_by(id=m, deleted=False).get_task_status()
                for m in members}

    @staticmethod
    def _restore(tasks):
        for member, task in tasks.items():
            db = DBInstance.find_by(id=member, deleted=False)
            db.set_task_status(task)
            db.save()

    @staticmethod
    def _mark(members, status):
        if not CONF.update_status_on_fail:
            return
        for member in members:
            try:
                db = DBInstance.find_by(id=member, deleted=False)
            except Exception:
                continue
            db.set_task_status(status)
            db.save()

    # --- restart ------------------------------------------------------------

    @staticmethod
    def _begin_member(member, task, service_status):
        """A member's rolling step begins: its task, and a service status
        that heartbeats sent before this no longer count against (the
        conductor drops older ones), so that HEALTHY later is the changed
        node's."""
        db = DBInstance.find_by(id=member, deleted=False)
        db.set_task_status(task)
        db.save()
        status = InstanceServiceStatus.find_by(instance_id=member)
        status.set_status(service_status)
        status.save()

    def restart_cluster(self, context, cluster_id):
        LOG.info("k2hdkc cluster %s: rolling restart begins.", cluster_id)
        started = time.monotonic()
        deadline = Deadline(CONF.cluster_usage_timeout)
        members = self._member_ids(cluster_id)
        done = []
        try:
            for member in members:
                self._restart_member(context, deadline, member, members)
                done.append(member)
            LOG.info("k2hdkc cluster %s: %d members restarted in %.1fs.",
                     cluster_id, len(done), time.monotonic() - started)
        except Exception as exc:
            rest = [m for m in members if m not in done]
            LOG.error("k2hdkc cluster %s: rolling restart stopped at %s "
                      "(%s); not restarted: %s.", cluster_id,
                      rest[0] if rest else "-", exc, rest[1:])
        finally:
            self.reset_task()

    def _restart_member(self, context, deadline, member, members):
        """Restarts one member and merges it back in. It comes back behind
        on the writes its replicas took meanwhile; chmpx marks it pending
        when its k2hdkc attaches, and the agent merges that in before the
        restart returns (only this member pulls: the others have all they
        own). A member that came back out of the ring is serviced in and
        merged here."""
        self._begin_member(member, InstanceTasks.REBOOTING,
                           ServiceStatuses.RESTARTING)
        try:
            self._ring(context, deadline, member, "restart_member")
            self._ring(context, deadline, member, "k2hdkc_ring_service_in")
            self._ring(context, deadline, member, "k2hdkc_ring_merge")
            self._wait_healthy(member, guestagent.member_timeout())
        finally:
            db = DBInstance.find_by(id=member, deleted=False)
            db.set_task_status(InstanceTasks.NONE)
            db.save()

    # --- upgrade ------------------------------------------------------------

    def upgrade_cluster(self, context, cluster_id, datastore_version):
        LOG.info("k2hdkc cluster %s: rolling upgrade to %s begins.",
                 cluster_id, datastore_version.name)
        started = time.monotonic()
        deadline = Deadline(CONF.cluster_usage_timeout)
        members = self._member_ids(cluster_id)
        done = []
        try:
            for member in members:
                db = DBInstance.find_by(id=member, deleted=False)
                if db.datastore_version_id != datastore_version.id:
                    self._upgrade_member(context, deadline, member,
                                         datastore_version)
                done.append(member)
            DBCluster.find_by(id=cluster_id).update(
                datastore_version_id=datastore_version.id)
            LOG.info("k2hdkc cluster %s: %d members on %s in %.1fs.",
                     cluster_id, len(done), datastore_version.name,
                     time.monotonic() - started)
        except Exception as exc:
            rest = [m for m in members if m not in done]
            self._failed("upgrade", cluster_id, exc, members=[],
                         status=InstanceTasks.UPGRADING_ERROR)
            LOG.error("k2hdkc cluster %s: rolling upgrade stopped at %s; "
                      "not upgraded: %s.", cluster_id,
                      rest[0] if rest else "-", rest[1:])
        finally:
            self.reset_task()

    def _upgrade_member(self, context, deadline, member, datastore_version):
        """One member on ``datastore_version``, as :meth:`_restart_member`
        restarts it. The member's own notification (as Trove's
        ``rolling_upgrade_cluster`` sends it) carries the agent's failure
        to the member's fault."""
        started = time.monotonic()
        self._begin_member(member, InstanceTasks.UPGRADING,
                           ServiceStatuses.UPGRADING)
        cluster_notification = getattr(context, "notification", None)
        notice = contextlib.nullcontext()
        if cluster_notification is not None:
            context.notification = DBaaSInstanceUpgrade(
                context, **cluster_notification.serialize(context))
            notice = StartNotification(
                context, instance_id=member,
                datastore_version_id=datastore_version.id)
        try:
            with notice:
                info = self._ring(context, deadline, member, "pre_upgrade")
                info = dict(info or {},
                            datastore_version=datastore_version.version)
                self._ring(context, deadline, member, "upgrade_member",
                           upgrade_info=info)
        finally:
            if cluster_notification is not None:
                context.notification = cluster_notification
        self._ring(context, deadline, member, "k2hdkc_ring_service_in")
        self._ring(context, deadline, member, "k2hdkc_ring_merge")
        self._wait_healthy(member, guestagent.member_timeout())
        db = DBInstance.find_by(id=member, deleted=False)
        db.datastore_version_id = datastore_version.id
        db.set_task_status(InstanceTasks.NONE)
        db.save()
        LOG.info("k2hdkc cluster %s: member %s upgraded to %s in %.1fs.",
                 self.id, member, datastore_version.name,
                 time.monotonic() - started)

    def _wait_healthy(self, member, seconds):
        started = time.monotonic()

        def status():
            return InstanceServiceStatus.find_by(
                instance_id=member).get_status()

        try:
            last = utils.poll_until(
                status,
                lambda s: s == ServiceStatuses.HEALTHY or s in FAILED_STATUSES,
                sleep_time=2, time_out=seconds)
        except PollTimeOut:
            raise RingStepFailed("wait for HEALTHY", member,
                                 "still %s after %ss" % (status().description,
                                                         seconds))
        if last != ServiceStatuses.HEALTHY:
            raise RingStepFailed("wait for HEALTHY", member,
                                 "reported %s" % last.description)
        LOG.info("k2hdkc cluster %s: member %s HEALTHY after %.1fs.",
                 self.id, member, time.monotonic() - started)
