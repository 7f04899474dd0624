# Imported from coturn's turnserver.conf by `icegate config import`.
# Each attribute names the turnserver.conf line it comes from; everything
# else keeps icegate's default (`icegate config default` lists them).
#
# Not carried over:
#   line 19: fingerprint: not configurable: pion/turn decides on FINGERPRINT (RFC 8489 §14.7)
#   line 25: user: coturn ignores user= when use-auth-secret is on, so this user could not log in; not carried over (an auth.user block would let it)
#   line 30: stale-nonce: not configurable: pion/turn makes and expires nonces itself, and answers a stale one with 438 (RFC 8489 §9.2.4)
#   line 35: cipher-list: not needed: Go's TLS stack picks the protocol versions (1.2 and up), ciphers and curves
#   line 36: no-tlsv1: not needed: Go's TLS stack picks the protocol versions (1.2 and up), ciphers and curves
#   line 37: no-tlsv1_1: not needed: Go's TLS stack picks the protocol versions (1.2 and up), ciphers and curves
#   line 38: dh-file: not needed: Go's TLS stack picks the protocol versions (1.2 and up), ciphers and curves
#   line 63: cli-password: a different design: icegate has no admin shell or web console; use the Prometheus metrics, `icegate policy explain` and SIGHUP reloads
#   line 64: redis-statsdb: not implemented in icegate (statistics in Redis); scrape the Prometheus metrics
#   line 65: mobility: not implemented in icegate (RFC 8016 mobility tickets)
#   line 66: no-stdout-log: not needed: icegate logs to standard error (journald under systemd); log.format = "json" for machines
#   line 67: log-file: not needed: icegate logs to standard error (journald under systemd); log.format = "json" for machines
#   line 68: simple-log: not needed: icegate logs to standard error (journald under systemd); log.format = "json" for machines
#   line 70: proc-user: not needed: run icegate under systemd (or another supervisor) as its own user
#   line 71: proc-group: not needed: run icegate under systemd (or another supervisor) as its own user
#   line 72: pidfile: not needed: run icegate under systemd (or another supervisor) as its own user
#
# Different in icegate:
#   line 7: alt-listening-port: carried to stun.alternate_port, used only with stun.alternate_address (RFC 5780, a second IP address), which the import does not set
#   line 43: denied-peer-ip: written without the addresses of allowed-peer-ip (line 59): coturn lets allowed-peer-ip win over denied-peer-ip, icegate lets deny win
#   line 43: denied-peer-ip: 10.0.0.0-10.255.255.255 is written as 22 CIDRs
#   line 61: prometheus: coturn serves metrics on every interface; icegate's listen is loopback only (write ":9641" to serve every interface)
#
# Already icegate's behaviour:
#   line 40: no-multicast-peers: icegate always denies multicast peers
#   line 62: no-cli: icegate has no admin shell
#   line 69: verbose: icegate's default log.level "info" logs what coturn's verbose does

realm = "turn.example.com" # line 23: realm

listen {
  addresses = [
    "10.0.0.5",       # line 9: listening-ip
    "2001:db8:10::5", # line 10: listening-ip
  ]
  port     = 3478 # line 5: listening-port
  tls_port = 443  # line 6: tls-listening-port
}

tls {
  cert_file = "/etc/letsencrypt/live/turn.example.com/fullchain.pem" # line 33: cert
  key_file  = "/etc/letsencrypt/live/turn.example.com/privkey.pem"   # line 34: pkey
}

relay {
  min_port    = 40000            # line 16: min-port
  max_port    = 49999            # line 17: max-port
  ipv4_bind   = "10.0.0.5"       # line 11: relay-ip
  ipv4_public = "203.0.113.10"   # line 13: external-ip
  ipv6_bind   = "2001:db8:10::5" # line 12: relay-ip
  ipv6_public = "2001:db8:10::5" # line 14: external-ip
  tcp         = false            # line 41: no-tcp-relay
}

auth {
  secrets = [
    "3b1a5e0e7d2c4f6b8a9d0c1e2f3a4b5c", # line 21: static-auth-secret
    "9e8d7c6b5a4f3e2d1c0b1a2f3e4d5c6b", # line 22: static-auth-secret
  ]
}

policy {
  allow = [
    "10.0.0.20/30", # line 59: allowed-peer-ip
  ]
  deny = [
    "0.0.0.0/8",       # line 42: denied-peer-ip
    "10.0.0.0/28",     # line 43: denied-peer-ip
    "10.0.0.16/30",    # line 43: denied-peer-ip
    "10.0.0.24/29",    # line 43: denied-peer-ip
    "10.0.0.32/27",    # line 43: denied-peer-ip
    "10.0.0.64/26",    # line 43: denied-peer-ip
    "10.0.0.128/25",   # line 43: denied-peer-ip
    "10.0.1.0/24",     # line 43: denied-peer-ip
    "10.0.2.0/23",     # line 43: denied-peer-ip
    "10.0.4.0/22",     # line 43: denied-peer-ip
    "10.0.8.0/21",     # line 43: denied-peer-ip
    "10.0.16.0/20",    # line 43: denied-peer-ip
    "10.0.32.0/19",    # line 43: denied-peer-ip
    "10.0.64.0/18",    # line 43: denied-peer-ip
    "10.0.128.0/17",   # line 43: denied-peer-ip
    "10.1.0.0/16",     # line 43: denied-peer-ip
    "10.2.0.0/15",     # line 43: denied-peer-ip
    "10.4.0.0/14",     # line 43: denied-peer-ip
    "10.8.0.0/13",     # line 43: denied-peer-ip
    "10.16.0.0/12",    # line 43: denied-peer-ip
    "10.32.0.0/11",    # line 43: denied-peer-ip
    "10.64.0.0/10",    # line 43: denied-peer-ip
    "10.128.0.0/9",    # line 43: denied-peer-ip
    "100.64.0.0/10",   # line 44: denied-peer-ip
    "127.0.0.0/8",     # line 45: denied-peer-ip
    "169.254.0.0/16",  # line 46: denied-peer-ip
    "172.16.0.0/12",   # line 47: denied-peer-ip
    "192.168.0.0/16",  # line 48: denied-peer-ip
    "198.18.0.0/15",   # line 49: denied-peer-ip
    "192.0.0.0/24",    # line 50: denied-peer-ip
    "192.0.2.0/24",    # line 51: denied-peer-ip
    "198.51.100.0/24", # line 52: denied-peer-ip
    "240.0.0.0/4",     # line 53: denied-peer-ip
    "::1",             # line 54: denied-peer-ip
    "64:ff9b::/96",    # line 55: denied-peer-ip
    "fc00::/7",        # line 56: denied-peer-ip
    "fe80::/10",       # line 57: denied-peer-ip
  ]
}

limits {
  allocations_per_user     = 12      # line 28: user-quota
  allocations_total        = 2000    # line 27: total-quota
  max_lifetime             = "7200s" # line 31: max-allocate-lifetime
  bandwidth_per_allocation = 250000  # line 29: max-bps
}

metrics {
  listen = "127.0.0.1:9641" # line 61: prometheus
}

stun {
  alternate_port = 3479 # line 7: alt-listening-port
}
