# What a typical coturn turnserver.conf becomes:
#   listening-port=3478, tls-listening-port=5349, min-port=49160,
#   max-port=49200, external-ip=198.51.100.20, use-auth-secret,
#   static-auth-secret=..., realm=example.org, total-quota=100,
#   user-quota=12, no-tcp-relay, denied-peer-ip=10.0.0.0-10.255.255.255
realm = "example.org"

relay {
  min_port    = 49160
  max_port    = 49200
  ipv4_public = "198.51.100.20"
  ipv6_bind   = ""
}

auth {
  secrets = ["north-wind-tree-stone-42"]
}

policy {
  deny = ["10.0.0.0/8"]
}

limits {
  allocations_per_user = 12
  allocations_total    = 100
}
