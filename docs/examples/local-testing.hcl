# A TURN server for tests on one machine: everything on loopback, a static
# user test/test, and relays allowed to reach loopback peers.
#
#   icegate serve -config local-testing.hcl
#   turnutils_uclient -u test -w test -y 127.0.0.1

realm = "icegate.test"

# Stop at once on Ctrl-C.
shutdown_grace = "0s"

log {
  level = "debug"
}

listen {
  addresses = ["127.0.0.1"]
}

relay {
  # A small range, so a test can check the relayed port.
  min_port = 50000
  max_port = 50999

  ipv4_bind   = "127.0.0.1"
  ipv4_public = "127.0.0.1"
  # No IPv6 relays.
  ipv6_bind = ""

  # A loopback relay address is intended: no warning.
  private_ok = true
}

auth {
  # A static long-term user (coturn: user=test:test with lt-cred-mech).
  user "test" {
    password = "test"
  }
}

policy {
  # Peers on this machine are denied by default; allow them.
  presets = ["loopback"]
}

metrics {
  listen = "127.0.0.1:9641"
}
