# TURN over TLS and HTTPS on one port (docs/tls.md, "Sharing 443"): the
# same address and port in listen and http.listen, HTTPS on.
listen {
  addresses = ["127.0.0.1"]
  tls_port  = 443
}

http {
  listen    = "127.0.0.1:443"
  cert_file = "testdata/tls/cert.pem"
  key_file  = "testdata/tls/key.pem"
}
