# Each discovery server is host:port; RFC 5780's fixed public addresses
# cannot follow a discovered one.
listen {
  addresses = ["203.0.113.10"]
}
relay {
  ipv4_public   = "auto"
  discover_with = ["stun.example.net", "203.0.113.20:3478", "[2001:db8::1]:0"]
}
stun {
  alternate_address = "203.0.113.11"
  alternate_public  = "198.51.100.11"
}
