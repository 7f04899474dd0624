# HTTPS on one address inside TURN over TLS's wildcard: the two sockets
# meet without being one, so they cannot share.
listen {
  addresses = ["0.0.0.0"]
  tls_port  = 443
}

http {
  listen    = "127.0.0.1:443"
  cert_file = "testdata/tls/cert.pem"
  key_file  = "testdata/tls/key.pem"
}
