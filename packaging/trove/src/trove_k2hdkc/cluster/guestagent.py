"""The guest RPC client of k2hdkc cluster members (``[k2hdkc]
guestagent_strategy``).

One method per ring step the Rust agent implements
(``datastore/src/cluster.rs``). Each is a call at the base API version
(1.0) that answers a JSON object. Each step takes ``timeout``: the number
of seconds the agent may spend on the step. The RPC waits a little longer
(:func:`rpc_timeout`), so that a slow step comes back as the agent's own
error and not as an RPC timeout.

Trove builds this client only where it names the datastore manager
(``Cluster.get_guest``, the cluster task manager). Instance operations use
Trove's plain ``guestagent.api.API``. The base methods are therefore left
as they are; the extra methods have their own names.
"""

from oslo_log import log as logging

from trove.common import cfg
from trove.common.strategies.cluster import base
from trove.guestagent import api as guest_api

from trove_k2hdkc import MANAGER

LOG = logging.getLogger(__name__)
CONF = cfg.CONF


#: How long the agent's restart of a member may spend merging back in
#: what the member missed (``REJOIN_WAIT`` in ``datastore/src/ring/rejoin.rs``).
REJOIN_WAIT = 300

#: How long getting a new version's image may take a member.
IMAGE_PULL_WAIT = 300


def member_timeout():
    """``[k2hdkc] cluster_member_timeout``: the bound of one ring step."""
    return CONF.get(MANAGER).cluster_member_timeout


def merge_timeout():
    """``[k2hdkc] cluster_merge_timeout``: the bound of a whole-ring merge."""
    return CONF.get(MANAGER).cluster_merge_timeout


def merge_rearm_after():
    """``[k2hdkc] cluster_merge_rearm_after``: after a MERGE that left a
    server stuck, how long until the next MERGE may go."""
    return CONF.get(MANAGER).cluster_merge_rearm_after


def rpc_timeout(seconds):
    """How long the RPC waits for a step the agent may spend ``seconds``
    on: 10% more, and at least 15 s more (queueing, a slow control port)."""
    return int(seconds) + max(15, int(seconds) // 10)


class K2hdkcGuestAgentStrategy(base.BaseGuestAgentStrategy):

    @property
    def guest_client_class(self):
        return K2hdkcGuestAgentAPI


class K2hdkcGuestAgentAPI(guest_api.API):
    """Trove's guest API plus the k2hdkc ring steps.

    The method names and arguments are a contract with the agent
    (``driver-api/src/ring.rs``, held against this class by
    ``tests/tests/ring_contract.rs``). The agent refuses unknown arguments.
    """

    def _ring(self, method, seconds, **kwargs):
        LOG.debug("k2hdkc: %(method)s on member %(id)s (bound %(s)ss).",
                  {"method": method, "id": self.id, "s": seconds})
        return self._call(method, rpc_timeout(seconds),
                          version=self.API_BASE_VERSION, **kwargs)

    def k2hdkc_ring_status(self):
        """This member's CUK and ring name, the ring as its chmpx sees it
        (``servers``), and the CUKs its k2hdkc.ini lists (``ini_cuks``)."""
        return self._ring("k2hdkc_ring_status", member_timeout())

    def k2hdkc_ring_converge(self, cuks, timeout=None):
        """Waits until this member's k2hdkc.ini lists exactly ``cuks``."""
        timeout = timeout or member_timeout()
        return self._ring("k2hdkc_ring_converge", timeout,
                          cuks=list(cuks), timeout=timeout)

    def k2hdkc_ring_service_in(self, timeout=None):
        """Puts this member into the ring (``SERVICEIN`` if it is out)."""
        timeout = timeout or member_timeout()
        return self._ring("k2hdkc_ring_service_in", timeout, timeout=timeout)

    def k2hdkc_ring_service_out(self, cuk, timeout=None):
        """``SERVICEOUT`` of the server with CUK ``cuk``, sent from this
        member (the leaving one need not answer)."""
        timeout = timeout or member_timeout()
        return self._ring("k2hdkc_ring_service_out", timeout,
                          cuk=cuk, timeout=timeout)

    def k2hdkc_ring_reattach(self, timeout=None):
        """Restarts this member's k2hdkc, so that chmpx marks it pending
        for the next merge."""
        timeout = timeout or member_timeout()
        return self._ring("k2hdkc_ring_reattach", timeout, timeout=timeout)

    def k2hdkc_ring_merge(self, timeout=None):
        """Runs and watches a merge of the whole ring from this member.
        Answers ``{"seconds": ..., "repairs": [...]}``."""
        timeout = timeout or merge_timeout()
        return self._ring("k2hdkc_ring_merge", timeout, timeout=timeout,
                          rearm_after=min(merge_rearm_after(), timeout))

    def cluster_complete(self):
        """Tells the member that the cluster is built. From then on it
        reports ``healthy`` instead of ``instance ready``."""
        return self._call("cluster_complete", self.agent_high_timeout,
                          version=self.API_BASE_VERSION)

    def stop_db_for_removal(self, timeout=None):
        """``stop_db`` of a member that leaves the cluster: the agent leaves
        the ring and the K2HR3 role and stops its containers.

        Sent at API 1.0, the only version whose ``stop_db`` carries
        ``do_not_start_on_reboot`` (Trove's ``stop_db`` drops the flag from
        1.1 on). The RPC gets a ring step's bound, not Trove's
        ``agent_call_low_timeout`` (15 s): leaving waits until the other
        servers list the member as out.
        """
        timeout = timeout or member_timeout()
        return self._call("stop_db", rpc_timeout(timeout),
                          version=self.API_BASE_VERSION,
                          do_not_start_on_reboot=True)

    def leave_for_cluster_delete(self):
        """The cast form of :meth:`stop_db_for_removal`, for a cluster
        delete: every member leaves K2HR3 and stops, none waits."""
        self._cast("stop_db", self.API_BASE_VERSION,
                   do_not_start_on_reboot=True)

    def upgrade_member(self, upgrade_info, timeout=None):
        """``upgrade`` as a call: Trove casts it and waits for a heartbeat,
        but a rolling upgrade goes on only when the member says it is done.
        The bound covers getting the new image, stopping, starting and the
        merge the member runs to pull what it missed."""
        timeout = max(timeout or 2 * member_timeout() + REJOIN_WAIT + IMAGE_PULL_WAIT,
                      self.agent_high_timeout)
        return self._call("upgrade", rpc_timeout(timeout),
                          version=self.API_BASE_VERSION,
                          upgrade_info=upgrade_info)

    def restart_member(self, timeout=None):
        """``restart`` with a bound that covers stopping, starting and the
        merge the member runs to pull what it missed (bounded by
        :data:`REJOIN_WAIT` in the agent); Trove's own ``restart`` waits
        only ``agent_call_high_timeout``."""
        timeout = max(timeout or 2 * member_timeout() + REJOIN_WAIT,
                      self.agent_high_timeout)
        return self._call("restart", rpc_timeout(timeout),
                          version=self.API_BASE_VERSION)
