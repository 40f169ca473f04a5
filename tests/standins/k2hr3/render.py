"""k2hdkc.ini as the K2HR3 stand-in renders it (see render_ini)."""


def render_ini(cfg, hosts, slaves=None):
    """The k2hdkc.ini in the shape of the K2HR3 template the K2HDKC DBaaS
    system stores (buildutils/custom_k2hr3_resource.txt): GLOBAL with
    CHMPXIDTYPE = CUSTOM, one SVRNODE per registered server host whose
    CUSTOM_ID_SEED is the host's `tag` (the host name k2hr3-init sends), a
    SLVNODE entry for any slave, K2HDKC. SELFCUK stays a placeholder that
    the fetching node replaces with its own CUK. NAME is the registered
    address (the template uses the tag; an address needs no resolver).
    A member registered without a tag renders an empty seed, which chmpx
    refuses, as it would with the real template."""
    slave = slaves is not None
    out = [
        "#", "# k2hdkc.ini rendered by the K2HR3 stand-in", "#",
        "[GLOBAL]",
        "FILEVERSION            = 1",
        "DATE                   = %s" % cfg.started,
        "GROUP                  = %s" % cfg.role,
        "MODE                   = %s" % ("SLAVE" if slave else "SERVER"),
        "CHMPXIDTYPE            = CUSTOM",
        "DELIVERMODE            = hash",
        "MAXCHMPX               = 256",
        "REPLICA                = 1",
        "MAXMQSERVER            = 8",
        "MAXMQCLIENT            = 128",
        "MQPERATTACH            = 8",
        "MAXQPERSERVERMQ        = 128",
        "MAXQPERCLIENTMQ        = 128",
        "MAXMQPERCLIENT         = 16",
        "MAXHISTLOG             = 0",
    ] + ([
        "CTLPORT                = %d" % cfg.slave_ctlport,
        "SELFCTLPORT            = %d" % cfg.slave_ctlport,
    ] if slave else [
        "PORT                   = %d" % cfg.server_port,
        "CTLPORT                = %d" % cfg.server_ctlport,
        "SELFCTLPORT            = %d" % cfg.server_ctlport,
        "SELFCUK                = __SELF_INSTANCE_ID__",
    ]) + [
        "RWTIMEOUT              = 10000",
        "RETRYCNT               = 500",
        "CONTIMEOUT             = 1000",
        "MQRWTIMEOUT            = 5000",
        "MQRETRYCNT             = 1000",
        "MQACK                  = no",
        "AUTOMERGE              = %s" % cfg.automerge,
        "DOMERGE                = on",
        "MERGETIMEOUT           = 0",
        "SOCKTHREADCNT          = %d" % cfg.threads,
        "MQTHREADCNT            = %d" % cfg.threads,
        "MAXSOCKPOOL            = 16",
        "SOCKPOOLTIMEOUT        = 0",
        "SSL                    = no",
        "K2HFULLMAP             = on",
        "K2HMASKBIT             = 4",
        "K2HCMASKBIT            = 8",
        "K2HMAXELE              = 16",
        "",
    ]
    for h in hosts:
        if h["port"] == cfg.server_port:
            out += ["[SVRNODE]", "NAME                   = %s" % h["ip"], "CUK                    = %s" % h["cuk"],
                    "PORT                   = %d" % cfg.server_port, "CTLPORT                = %d" % cfg.server_ctlport,
                    "CUSTOM_ID_SEED         = %s" % h["tag"], "SSL                    = no", ""]
    if slave:
        for h in slaves or [{"ip": "127.0.0.1", "tag": "no-slave-yet"}]:
            out += ["[SLVNODE]", "NAME                   = %s" % h["ip"],
                    "CTLPORT                = %d" % cfg.slave_ctlport,
                    "CUSTOM_ID_SEED         = %s" % h["tag"], "SSL                    = no", ""]
        return "\n".join(out)
    # Slaves may connect from anywhere in the cluster's network.
    out += ["[SLVNODE]", "NAME                   = [.]*", "CTLPORT                = %d" % cfg.slave_ctlport, ""]
    out += ["[K2HDKC]", "RCVTIMEOUT             = 1000", "SVRNODEINI             = /etc/antpickax/k2hdkc.ini",
            "K2HTYPE                = file", "K2HFILE                = /var/lib/antpickax/k2hdkc/data/k2hdkc.k2h",
            "K2HFULLMAP             = on", "K2HINIT                = no", "K2HMASKBIT             = 4",
            "K2HCMASKBIT            = 8", "K2HMAXELE              = 16", "K2HPAGESIZE            = 128",
            "MAXTHREAD              = 20", ""]
    return "\n".join(out)
