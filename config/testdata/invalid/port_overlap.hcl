# The relay range holds the listening port: a warning, next to an error.
listen {
  port = 50000
  udp  = false
  tcp  = false
  tls  = false
  dtls = false
}

relay {
  min_port = 49152
  max_port = 50999
}
