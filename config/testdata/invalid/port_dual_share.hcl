# http.listen ":443" takes IPv4 too, but TURN over TLS listens only on ::.
listen {
  addresses = ["::"]
  tls_port  = 443
}

http {
  listen    = ":443"
  cert_file = "testdata/tls/cert.pem"
  key_file  = "testdata/tls/key.pem"
}

signaling {
  token_secrets = ["0123456789abcdef0123456789abcdef"]
}
