# http.listen ":443" takes IPv4 and IPv6; with both wildcards in
# listen.addresses (the default), TURN over TLS shares both sockets.
listen {
  tls_port = 443
}

http {
  listen    = ":443"
  cert_file = "testdata/tls/cert.pem"
  key_file  = "testdata/tls/key.pem"
}

signaling {
  token_secrets = ["0123456789abcdef0123456789abcdef"]
}
