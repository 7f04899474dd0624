listen {
  udp  = false
  tcp  = false
  tls  = false
  dtls = false
}

relay {
  tcp = true
}
