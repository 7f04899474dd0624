# Every block and attribute set to a non-default value.
realm          = "turn.example.com"
shutdown_grace = "0s"

log {
  level  = "debug"
  format = "json"
}

listen {
  addresses = ["127.0.0.1", "::1", "192.0.2.1", "fe80::1%eth0"]
  port      = 3479
  tls_port  = 443
  udp       = true
  tcp       = false
  tls       = true
  dtls      = false
}

tls {
  cert_file       = "testdata/tls/cert.pem"
  key_file        = "testdata/tls/key.pem"
  reload_interval = "1m"
}

relay {
  min_port    = 40000
  max_port    = 40999
  ipv4_bind   = "10.0.0.5"
  ipv4_public = "203.0.113.10"
  ipv6_bind   = "2001:db8::5"
  ipv6_public = "2001:db8:1::5"
  private_ok  = true
  tcp         = true
}

auth {
  secrets          = ["new-secret-0123456789", "old-secret-0123456789"]
  separator        = "-"
  ephemeral_secret = false

  user "alice" {
    password = "wonderland"
  }
  user "bob" {
    key = "0x0123456789ABCDEF0123456789abcdef"
  }
  user "carol" {
    key = "fedcba9876543210fedcba9876543210"
  }
}

policy {
  presets = ["lan", "loopback", "cgnat", "documentation"]
  allow   = ["10.1.0.0/16", "192.168.1.7", "fd00::/8", "2001:db8::1"]
  deny    = ["10.1.2.0/24", "203.0.113.99", "::ffff:172.16.0.0/108", "::ffff:192.0.2.9"]
}

limits {
  allocations_per_user       = 0
  allocations_total          = 500
  permissions_per_allocation = 16
  default_lifetime           = "30s"
  max_lifetime               = "24h"
  bandwidth_per_allocation   = 125000
  unauthenticated_rate       = 0
  unauthenticated_burst      = 0
}

metrics {
  listen = ":9100"
}
