# Plain HTTP cannot share the TURN over TLS port: it would need the TLS
# handshake to route.
listen {
  addresses = ["0.0.0.0"]
  tls_port  = 443
}

http {
  listen = "0.0.0.0:443"
}
