# null puts a switch back to its built-in default; metrics off.
listen {
  udp  = null
  dtls = false
}

relay {
  ipv4_bind = ""
}

metrics {
  listen = ""
}
