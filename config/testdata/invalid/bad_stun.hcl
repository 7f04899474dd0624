listen {
  addresses = ["0.0.0.0", "192.0.2.1"]
  udp       = false
}

stun {
  alternate_address = "192.0.2.1"
  alternate_port    = 3478
  alternate_public  = "2001:db8::1"
}
