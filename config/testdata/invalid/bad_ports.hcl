# Relay range upside down, listening ports out of range.
relay {
  min_port = 60000
  max_port = 50000
}

listen {
  port     = 0
  tls_port = 70000
}
