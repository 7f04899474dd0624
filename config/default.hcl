# icegate's built-in defaults.
#
# This file is compiled into the icegate binary. Your configuration file is
# read on top of it: every attribute you leave out keeps the value shown here,
# and an attribute or block not shown here is an error. Durations are Go
# durations ("30s", "10m", "1h30m").

# The long-term credential realm (RFC 8489 §9.2), sent to clients in the REALM
# attribute and part of every long-term key MD5(username:realm:password).
# Changing it invalidates keys given as `key` below. coturn: realm.
realm = "icegate"

# How long SIGINT/SIGTERM lets live allocations drain before closing them.
# "0s" closes them at once. A second SIGINT/SIGTERM always closes them at once.
shutdown_grace = "10s"

log {
  # One of "debug", "info", "warn", "error". Changed by a reload (SIGHUP).
  level = "info"

  # "text" (key=value lines) or "json" (one object a line).
  format = "text"
}

listen {
  # IP addresses to listen on: one socket per address and transport. An
  # unspecified address ("0.0.0.0", "::") listens on every interface of that
  # family. coturn: listening-ip.
  addresses = ["0.0.0.0", "::"]

  # Port for STUN/TURN over UDP and TCP. coturn: listening-port.
  port = 3478

  # Port for TURN over TLS (TCP) and DTLS (UDP). coturn: tls-listening-port.
  tls_port = 5349

  # Receive and send buffer of every UDP socket (listeners and relays), in
  # bytes; 0 keeps the system's default (208 KB on Linux, which overflows in
  # bursts). 4 MiB is coturn's size. Set with SO_RCVBUFFORCE when running as
  # root, else capped by net.core.rmem_max / wmem_max.
  socket_buffer = 4194304

  # Send a burst of same-size datagrams for one destination as one UDP GSO
  # train (Linux, UDP_SEGMENT): the kernel takes it through the stack once.
  # The kernel or the network card cuts it into ordinary datagrams. Turn it
  # off only to rule it out when chasing a driver problem.
  udp_segmentation = true

  # Bind listener and relay sockets on a specific address (addresses here,
  # relay.ipv4_bind, relay.ipv6_bind) even while no interface has it yet
  # (Linux IP_FREEBIND): a server started before the network serves once
  # the address appears, and logs "bound before the address is up" at
  # start. false: such an address fails the start, or each Allocate (500).
  freebind = true

  # Switch each transport on or off. coturn: no-udp, no-tcp, no-tls, no-dtls.
  udp  = true
  tcp  = true
  tls  = true
  dtls = true

  # Load balancers or proxies (CIDRs or addresses) in front of the TCP and
  # TLS listeners that send the PROXY protocol (v1 or v2: nginx stream
  # "proxy_protocol on", haproxy "send-proxy"/"send-proxy-v2"). Their
  # connections must begin with the header, and the client address in it is
  # the one authentication, peer policy, limits and logs see. A header from
  # anyone else closes the connection; direct clients are served as usual.
  # Not for UDP or DTLS. Empty: the PROXY protocol is off.
  proxy_from = []
}

tls {
  # PEM certificate chain and private key used by TLS and DTLS. Both empty
  # means a self-signed certificate is generated at start (fine for tests;
  # browsers refuse turns: URLs with it). Relative paths are relative to the
  # working directory. coturn: cert, pkey.
  cert_file = ""
  key_file  = ""

  # How often the two files are checked for changes; a changed pair is loaded
  # without a restart (for example after a Let's Encrypt renewal).
  reload_interval = "5s"

  # Certificates from an ACME CA (Let's Encrypt by default), obtained,
  # stored and renewed by icegate for TLS, DTLS and (with http.acme) HTTPS;
  # instead of cert_file and key_file. docs/tls.md, "ACME".
  # acme {
  #   domains = ["turn.example.com"]   # required
  #   email   = "ops@example.com"      # default "" (no contact)
  #   ca      = "https://acme-v02.api.letsencrypt.org/directory"
  #   ca_root = ""                     # PEM roots for a private CA's HTTPS
  #   storage = ""                     # default $STATE_DIRECTORY/acme, else /var/lib/icegate/acme
  #   challenges    = ["tls-alpn-01", "http-01"]
  #   tls_alpn_port = 443              # where the CA connects for tls-alpn-01
  #   http_listen   = ":80"            # where http-01 is answered
  #   renewal_window = 0.3333          # renew in the last third of the lifetime
  #   check_interval = "10m"
  # }
}

relay {
  # Range of UDP (and TCP) ports relayed transport addresses are allocated
  # from. coturn: min-port, max-port.
  min_port = 49152
  max_port = 65535

  # Local IPv4 address relays bind to. "" switches IPv4 relays off.
  # coturn: relay-ip.
  ipv4_bind = "0.0.0.0"

  # IPv4 address given to clients in XOR-RELAYED-ADDRESS, for a server behind
  # 1:1 NAT (for example a cloud VM). "" means the bind address, or when that
  # is unspecified the first usable address of this host's interfaces.
  # "auto" asks the STUN servers of discover_with. coturn: external-ip.
  ipv4_public = ""

  # The same for IPv6 relays (RFC 6156). "" switches IPv6 relays off.
  ipv6_bind   = "::"
  ipv6_public = ""

  # STUN servers (host:port) that ipv4_public/ipv6_public = "auto" ask, from
  # the relay bind address, what address they see; more than half must agree
  # or the server does not start. Three, run by different parties, is best.
  discover_with = []

  # How often "auto" asks again (10s to 24h); a new majority is advertised to
  # new allocations from then on.
  discover_interval = "5m"

  # Say that a private or loopback relay address is intended (a LAN or a
  # test). Without it, a private ipv4_public/ipv6_public (or a specific
  # ipv4_bind/ipv6_bind advertised as itself) is an error, a discovered one
  # stops the start, and one picked from the interfaces is warned about.
  private_ok = false

  # Allow TCP relays (RFC 6062). Browsers never ask for them.
  tcp = false

  # How relayed addresses are handed out. "dedicated": a relay port per
  # allocation from min_port..max_port. "shared": every UDP allocation is
  # served from the few ports min_port..max_port (a handful, such as 3; at
  # most 64), peers told apart by their address and port, so a container
  # publishes a handful of ports instead of thousands. Shared answers
  # EVEN-PORT and RESERVATION-TOKEN with 508, refuses a ChannelBind to a
  # peer address:port another allocation on the same port holds (403), and
  # cannot go with tcp = true. See docs/operations.md, "Few relay ports".
  # coturn: --multiplex-peer (4.12+). Restart to change.
  mode = "dedicated"

  # Relay the ChannelData of UDP clients with a bound channel in the kernel
  # (an eBPF TC program; needs Linux 5.12+, CAP_BPF and CAP_NET_ADMIN, and
  # Ethernet interfaces). "auto" uses it when it can and logs one line why
  # not otherwise; "on" refuses to start without it; "off" never loads it.
  # Allocations with a bandwidth cap and relay.mode = "shared" stay in user
  # space. See docs/operations.md, "Kernel offload". Restart to change.
  kernel_offload = "auto"

  # Interfaces it attaches to. [] (the default): the Ethernet interfaces
  # that hold a listen or relay address, all of them for a wildcard one.
  kernel_offload_interfaces = []
}

auth {
  # Shared secrets for time-limited credentials (the TURN REST API: username
  # "expiry:userid", password base64(HMAC-SHA1(secret, username))). Any of
  # them is accepted and the first one mints, so a secret can be rotated by
  # putting the new one first and removing the old one a credential lifetime
  # later. coturn: use-auth-secret, static-auth-secret.
  secrets = []

  # Separates expiry and user id in time-limited usernames.
  # coturn: rest-api-separator.
  separator = ":"

  # With no secret and no user configured, generate a random secret at start
  # and print how to mint credentials with it. When false and nothing is
  # configured, every TURN request is refused (STUN still works).
  ephemeral_secret = true

  # Static long-term users (coturn: user=, lt-cred-mech), one block each,
  # with exactly one of a password or a key (the hex MD5 of
  # "name:realm:password", as `turnadmin -k` prints it). None by default:
  #
  #   user "alice" {
  #     password = "correct horse battery staple"
  #   }
  #   user "bob" {
  #     key = "0x5e5ad4e7e1a2c8e5f6d7a1b2c3d4e5f6"
  #   }
}

# Which peer addresses relays may send to. Loopback, private, link-local,
# cloud metadata and other special-purpose ranges are denied unless allowed
# here; `icegate policy explain IP` shows which rule decides an address.
policy {
  # Named ranges to allow as peers although the built-in rules deny them:
  # "lan", "loopback", "cgnat", "documentation".
  presets = []

  # CIDRs or addresses to allow as peers although the built-in rules deny
  # them. coturn: allowed-peer-ip.
  allow = []

  # CIDRs or addresses to deny as peers on top of the built-in rules. Deny
  # wins over everything else. coturn: denied-peer-ip.
  deny = []
}

limits {
  # Live allocations a user id may hold; beyond, 486 Allocation Quota Reached.
  # 0 means no cap. coturn: user-quota.
  allocations_per_user = 10

  # Live allocations on the whole server; beyond, 508 Insufficient Capacity.
  # 0 means no cap. coturn: total-quota.
  allocations_total = 10000

  # Peer permissions an allocation may hold; beyond, 508. 0 means no cap.
  permissions_per_allocation = 64

  # Allocation lifetime when the client asks for none.
  # Both lifetimes must lie between 30s and 24h.
  default_lifetime = "10m"

  # Longest lifetime a client may ask for. coturn: max-allocate-lifetime.
  max_lifetime = "1h"

  # Relayed bytes per second per allocation and direction; excess packets are
  # dropped. 0 means no cap. coturn: max-bps.
  bandwidth_per_allocation = 0

  # Unauthenticated UDP requests (STUN Binding, the first Allocate that gets
  # the 401 challenge) accepted per source IP per second; excess is dropped.
  # One source address (IP and port) gets at most a fifth of it; each TCP,
  # TLS or DTLS connection has a fifth of its own instead, as its source
  # cannot be forged. 0 means no limit.
  unauthenticated_rate = 100

  # Requests a source IP may send at once above that rate. At least
  # unauthenticated_rate.
  unauthenticated_burst = 200

  # TCP and TLS client connections open at once from one IP address; beyond,
  # a new connection is closed at accept. Clients behind one carrier-grade
  # NAT or office firewall share an address: raise it (or set 0) when many
  # of them use TURN over TCP or TLS, and set 0 behind an L4 proxy that
  # hides client addresses. 0 means no cap.
  connections_per_source = 256
}

metrics {
  # host:port serving Prometheus metrics at /metrics, and the admin API
  # (/api/v1/admin/, with the keys of api.keys). "" switches it off.
  listen = "127.0.0.1:9641"
  # Also serve Go's runtime profiles (heap, goroutines, CPU) under
  # /debug/pprof/ on listen. They reveal what the process holds.
  pprof = false
}

# Relayed traffic per user and custom identifier, in minute buckets, for the
# admin API's usage query (docs/operations.md, "Usage").
usage {
  # How long minute buckets are kept (in Redis too, in a cluster).
  retention = "24h"
}

# The HTTP server: the signaling WebSocket (/ws, /ws/simple), the credential
# API (/api/turn, /api/ice-servers) and the test page (/). See
# docs/signaling.md.
http {
  # host:port to serve on. "" switches all of it off. Only this machine can
  # reach the default; to serve others, listen on ":8080" (or behind a
  # proxy) and set signaling.token_secrets.
  listen = "127.0.0.1:8080"

  # PEM certificate chain and key for HTTPS. Both empty serves plain HTTP
  # (browsers allow WebRTC on http://localhost only).
  cert_file = ""
  key_file  = ""

  # Serve HTTPS with tls.acme's certificate instead (needs tls.acme; not
  # with cert_file).
  acme = false

  # Serve the NAT traversal test page at /.
  test_page = true

  # DNS names clients reach this server by, such as "signal.example.com"
  # or "*.example.com" (any name under it). A request naming another host
  # gets 421, so a web page whose DNS name rebinds to this server's address
  # cannot reach signaling. Always accepted besides these: localhost, any IP
  # address, signaling.turn_host and the names in the certificates of
  # http.cert_file and tls.cert_file. Reaching the server by another DNS name
  # (a self-hosted box at home.example.net) needs it listed here.
  hosts = []

  # listen.proxy_from for this listener (the PROXY header comes before
  # any TLS): the proxies whose connections must begin with a PROXY v1 or
  # v2 header, whose client address signaling and its logs then see.
  # X-Forwarded-For is never trusted. Empty: off.
  proxy_from = []

  # Serve /healthz and /readyz here too (they are always on
  # metrics.listen), for a load balancer that reaches only this listener.
  health_endpoints = false
}

signaling {
  # Browser origins allowed to open the WebSocket and call the credential
  # API, such as "https://app.example.com" or "https://*.example.com". Empty
  # allows the server's own origin and http(s)://localhost, 127.0.0.1 and
  # [::1] on any port. "*" allows any site: never do that on a public server.
  allowed_origins = []

  # Secrets for the tokens (HS256 JWTs) clients must present; empty needs
  # none (fine on localhost). Any is accepted; the first mints with
  # `icegate token`. Generate one with: openssl rand -base64 32
  token_secrets = []

  # When set, a token's "aud" claim (a string or an array of strings) must
  # name this value, so tokens minted for another service are refused. ""
  # does not check "aud".
  token_audience = ""

  # Refuse tokens whose lifetime (exp - iat) is longer than this, and
  # tokens without "iat", so a leaked token cannot be one minted to last
  # for years. "0s" puts no cap.
  max_token_lifetime = "0s"

  # Host name or IP in the stun:/turn:/turns: URLs handed out. "" uses the
  # host the client reached this HTTP server at.
  turn_host = ""

  # Lifetime of the TURN credentials handed out (minted with the first
  # auth.secrets, or the generated one). Connected peers get fresh ones
  # before they expire.
  credential_ttl = "1h"

  # Open signaling WebSockets at most; beyond, 503.
  max_connections = 10000

  # File descriptors under the process's open-file limit that new signaling
  # connections leave free, for relay sockets, accepts, Redis and logs;
  # beyond, 503 before the upgrade.
  descriptor_reserve = 512

  # Sessions opened or resumed at once (each waits for the cluster bus);
  # one more connection waits up to a second for a place, then gets 503
  # "busy" (Retry-After: 1) before the upgrade, so a reconnect storm waits
  # at the door, not in a queue to Redis. 0: automatic, 64 on a cluster
  # and 4 per CPU with the in-process bus.
  max_opening = 0

  # Largest message a client may send, in bytes.
  max_message_bytes = 65536

  # Messages one peer may send per second, and the burst above that rate.
  messages_per_second = 50
  messages_burst      = 200

  # Peers in one room at most (a join may ask for fewer), and rooms one
  # peer may be in at once.
  peers_per_room = 16
  rooms_per_peer = 8

  # Peers in a room a socket.io client creates (/socket.io/: the rooms and
  # codelab event vocabularies cannot ask for a size; the tutorials use 2).
  socketio_room_size = 2

  # Messages that may wait for one peer; a peer that falls further behind
  # is disconnected, so a slow reader never slows anyone else.
  send_queue = 256

  # How long a dropped peer keeps its id, rooms and missed messages for a
  # reconnect with its resume token. "0s" turns resuming off.
  resume_grace = "30s"

  # How often idle WebSockets are pinged; keep it below the 60 s idle
  # timeout of proxies such as nginx.
  ping_interval = "25s"

  # Let a peer ask for the server's decisions about its own TURN requests
  # (authenticated, allocation created, permission denied by rule X).
  turn_events = true
}

# The server API under /api/v1/ on the HTTP listener: an application's
# backend pushes messages to rooms, peers and users, disconnects them, and
# lists rooms, members and nodes (docs/signaling.md, "Server API").
api {
  # Keys a backend sends as "Authorization: Bearer KEY", each at least 32
  # random characters (openssl rand -hex 32). Any of them is accepted, so a
  # key is replaced without a gap: add the new one, reload, move the
  # backends over, remove the old one, reload. Empty switches the API off.
  keys = []

  # The longest lifetime a backend may ask of the credential API
  # (POST /api/v1/turn/credentials): a longer "ttl" is lowered to this.
  max_credential_ttl = "24h"
}

# RFC 5780 NAT behaviour discovery, for `icegate natcheck` and clients such
# as coturn's turnutils_natdiscovery. Needs a second IP address on this host.
# With one, icegate answers Binding (and serves TURN) on four UDP sockets:
# the primary address (the one address of that family in listen.addresses,
# which must then be a specific one, not 0.0.0.0) and the alternate address,
# each on listen.port and alternate_port. Binding responses then carry
# OTHER-ADDRESS and RESPONSE-ORIGIN and honour CHANGE-REQUEST, RESPONSE-PORT
# and PADDING. Without one, icegate never sends OTHER-ADDRESS and answers
# CHANGE-REQUEST with 420, as RFC 5780 §6.1 asks.
stun {
  # The second IP address of this host. "" switches RFC 5780 off.
  # coturn: the second listening-ip (coturn needs two for RFC 5780 too).
  alternate_address = ""

  # The second UDP port, opened on both addresses. coturn: alt-listening-port.
  alternate_port = 3479

  # The alternate address as clients see it behind a 1:1 NAT (a cloud VM);
  # the primary's is relay.ipv4_public (relay.ipv6_public for IPv6). ""
  # means alternate_address. coturn: the second external-ip.
  alternate_public = ""

  # Serve clients older than RFC 5780: send the RFC 3489 attributes
  # CHANGED-ADDRESS and SOURCE-ADDRESS, and (IPv4 only) answer RFC 3489
  # Binding requests, those without the magic cookie. RESPONSE-ADDRESS is
  # never honoured: answers go to the request's source.
  rfc3489 = false
}

# A signaling cluster on Redis: several `icegate serve` processes share
# rooms, peers and resume state. Absent by default (one process, no Redis);
# adding, changing or removing it needs a restart. For example:
#
#   cluster {
#     # Required. redis://[user:pass@]host:port/db, rediss://... (TLS),
#     # unix:///path/to/redis.sock?db=N, or Sentinel:
#     # redis://host1:26379?addr=host2:26379&master_set=NAME
#     redis_url = "redis://127.0.0.1:6379/0"
#
#     # This node's name in member lists. "" (the default) is the host
#     # name plus a random suffix, chosen at each start.
#     node_id = ""
#
#     # A node silent this long is dead: its peers are held for
#     # signaling.resume_grace (they may resume on any node), then leave.
#     # At least 1s.
#     node_timeout = "10s"
#
#     # Starts every Redis key icegate writes.
#     key_prefix = "icegate:"
#   }
