"""Leaf nodes: this server linked to other NATS servers (a hub, or leaves that dial us).

    service.py   LeafService: the remotes we dial, the listener leaves dial, /leafz, the
                 per-account registry that turns sublist changes into LS+/LS- on every link,
                 the backlog waiting for each remote (log lines, /leafz `remotes`)
    link.py      LeafLink: one leaf connection, a Client of kind Leafnode bound to one account
    interest.py  what a link announced to its peer (counts per subject/queue) and the
                 LS+ / LS- a subscription change needs
    routing.py   how a message that came over a link is delivered, queue filters included
    remote.py    a configured remote: URL pool, credentials, dialing (TCP, TLS, WebSocket)
    wsclient.py  the client side of WebSocket, for ws:// and wss:// remotes
    auth.py      the leafnodes { authorization {} } block of the accepting side
    uplink.py    edgebus's `uplinks` of a remote: a local stream pushed into a hub stream with
                 acked, de-duplicated JetStream publishes (firmware-notes/leaf-sync.md)

The wire codec is edgebus/codec/leaf.py; protocols/leaf/README.md describes the protocol.
"""
