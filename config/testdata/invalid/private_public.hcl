# A private or loopback advertised relay address cannot be reached from the
# internet: an error unless relay.private_ok says a LAN or a test is meant.
relay {
  ipv4_public = "10.1.2.3"
  ipv6_public = "::1"
}
