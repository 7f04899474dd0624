# A LAN deployment: the private advertised address is intended.
relay {
  ipv4_public = "192.168.1.10"
  ipv6_public = "fd00::10"
  private_ok  = true
}
