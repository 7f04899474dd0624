relay {
  ipv4_public = "203.0.113.10"
}

stun {
  alternate_address = "198.51.100.2"
  alternate_port    = 5349
}
