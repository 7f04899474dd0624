# No primary address: its error alone, no warning about
# stun.alternate_public, which would compare relay.ipv4_public with nothing.
listen {
  addresses = ["192.0.2.1", "192.0.2.3"]
}

relay {
  ipv4_public = "203.0.113.10"
}

stun {
  alternate_address = "192.0.2.2"
}
