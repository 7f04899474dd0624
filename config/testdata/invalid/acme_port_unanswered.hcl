# tls-alpn-01's port is HTTPS from a file (which offers no "acme-tls/1"),
# http-01's is TURN over TCP: config check passed both, and every
# validation of either challenge failed at the CA.
listen {
  addresses = ["127.0.0.1"]
  port      = 80
}
tls {
  acme {
    domains = ["turn.example.com"]
    storage = "/tmp/icegate-acme-test"
  }
}
http {
  listen    = "127.0.0.1:443"
  cert_file = "testdata/tls/cert.pem"
  key_file  = "testdata/tls/key.pem"
}
