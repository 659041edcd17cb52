"""
Rooms across processes and machines, on Redis (docs/cluster.md).

A room lives on one node. A client connected to another node joins it there:
its room commands are relayed to the room's node over Redis pub/sub, where
it is a participant like any other (its member relays the room's events
back). Nothing here is imported when C{cluster_redis_url} is empty.

  - L{wcs.cluster.bus}: messages between nodes, one channel per node, in order.
  - L{wcs.cluster.registry}: the keys: live nodes and their load, where each
    room lives.
  - L{wcs.cluster.relay}: the client's node's end of a participant on another
    node (L{wcs.cluster.visited}: those rooms as seen here), L{wcs.cluster.hosts}
    the room's node's end; L{wcs.cluster.routing}: which end a message is for.
  - L{wcs.cluster.resync}, L{wcs.cluster.splits}: what an outage or a stall
    left wrong is put right (lost messages, a room held by two nodes).
  - L{wcs.cluster.service}: the service that ties them to a L{RoomServer}.
"""

from wcs.config import Key, declare

declare(
    Key("cluster_redis_url", "str", "",
        "Redis URL (redis://host:port/db) of the cluster this node joins; empty: "
        "one process, no Redis (docs/cluster.md)"),
    Key("node_id", "str", "",
        "this node's name in the cluster, unique; empty: host name and ws_port"),
    Key("cluster_node_ttl", "int", 3000,
        "ms a node counts as live after its last heartbeat (sent every third of "
        "it); its rooms and members are given up when it expires"),
    Key("cluster_session_max_relayed_streams", "int", 64,
        "streams (mediaSessionIds) a client's connection may have taken to other "
        "nodes' rooms and not yet ended; past it a new one gets FAILED; 0: no "
        "limit (docs/security.md)"),
    Key("cluster_max_message", "int", 1 << 20,
        "bytes of the longest message a node takes from another over Redis; a "
        "longer one is dropped and logged (docs/security.md)"),
)

# The media relay (wcs.cluster.media).
declare(
    Key("cluster_relay_address", "str", "127.0.0.1",
        "address of this node's media relay, where other nodes push the frames of "
        "streams published there into rooms of this node (docs/cluster.md); on "
        "several machines, a private address the other nodes reach"),
    Key("cluster_relay_port", "int", 0,
        "TCP port of this node's media relay; 0: any free port (told to the other "
        "nodes in join answers)"),
    Key("cluster_edge_play", "bool", True,
        "a WebRTC player here of a room stream of another node negotiates here and "
        "plays this node's one pull of it (edge fan-out); off: its play is forwarded "
        "to the room's node, which sends it the media itself (docs/cluster.md)"),
    Key("cluster_edge_play_min_players", "int", 3,
        "with cluster_edge_play, the WebRTC players of a stream on this node from "
        "which it pulls the stream: a new play is played from this node's pull when "
        "it pulls the stream already or the play makes the stream's players here at "
        "least this many; else it is forwarded to the room's node (the first "
        "N-1 players: a pull costs both nodes a copy of the stream); 1: every play "
        "pulls (docs/cluster.md, \"Edge fan-out\")"),
)
