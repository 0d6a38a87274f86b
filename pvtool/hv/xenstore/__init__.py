"""An in-process XenStore daemon (docs/misc/xenstore.txt, io/xs_wire.h), the one a PV
domain finds through start_info.store_mfn and store_evtchn.

    wire.py          the message codec and the byte-stream reader
    paths.py         path rules; perms.py: node permissions
    tree.py          the nodes; transactions.py: transactions over a copy of the tree
    watches.py       watches and the events they fire
    operations.py    one function per request type; store.py: the daemon's core
    ring.py          a domain's connection over its ring page
    client.py        the connection of an in-process backend (domain 0), in Python
    toolstack.py     the nodes libxl writes for a domain, its console and its disk
    daemon.py        all of it started for a booted domain
"""
