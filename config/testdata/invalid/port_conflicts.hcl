# Sockets that meet without being the shareable pair.
listen {
  addresses = ["0.0.0.0", "::"]
  port      = 8080
  tls_port  = 443
}

http {
  # HTTPS on the TURN over TCP port: only the TLS port is shared.
  listen    = "127.0.0.1:8080"
  cert_file = "testdata/tls/cert.pem"
  key_file  = "testdata/tls/key.pem"
}

metrics {
  # A specific IPv6 address inside the :: wildcard of TURN over TLS.
  listen = "[::1]:443"
}
