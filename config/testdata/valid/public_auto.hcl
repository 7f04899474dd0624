# The relay address behind a NAT, found by asking three STUN servers.
relay {
  ipv4_public       = "auto"
  ipv6_public       = "auto"
  discover_with     = ["stun1.example.net:3478", "203.0.113.20:3478", "[2001:db8::1]:3478"]
  discover_interval = "2m"
}
