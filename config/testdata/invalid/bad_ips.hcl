listen {
  addresses = ["0.0.0.0", "localhost", "0.0.0.0", "::ffff:10.0.0.1", "224.0.0.1"]
}

relay {
  ipv4_bind   = "::1"
  ipv4_public = "0.0.0.0"
  ipv6_bind   = "10.0.0.1"
  ipv6_public = "::ffff:192.0.2.1"
}
