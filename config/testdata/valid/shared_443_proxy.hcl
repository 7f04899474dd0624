# TURN over TLS and HTTPS share 443 behind one load balancer: the same
# PROXY rule on both sides, as one socket reads it.
listen {
  addresses  = ["127.0.0.1"]
  tls_port   = 443
  proxy_from = ["10.200.0.0/24"]
}

http {
  listen     = "127.0.0.1:443"
  cert_file  = "testdata/tls/cert.pem"
  key_file   = "testdata/tls/key.pem"
  proxy_from = ["10.200.0.0/24"]
}
