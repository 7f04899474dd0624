relay {
  ipv4_bind   = "239.1.1.1"
  ipv4_public = "three"
  ipv6_bind   = "fe80::1%eth0"
  ipv6_public = "::"
}
