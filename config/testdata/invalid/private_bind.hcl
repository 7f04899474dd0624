# A specific bind address with no public one is advertised as itself: a
# private or loopback one is the same mistake as a private ipv4_public.
relay {
  ipv4_bind = "192.168.1.20"
  ipv6_bind = "::1"
}
