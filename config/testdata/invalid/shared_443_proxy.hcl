# TURN over TLS and HTTPS share 443, but the PROXY rules differ: one
# socket reads one rule.
listen {
  addresses  = ["127.0.0.1"]
  tls_port   = 443
  proxy_from = ["10.200.0.0/24"]
}

http {
  listen     = "127.0.0.1:443"
  cert_file  = "testdata/tls/cert.pem"
  key_file   = "testdata/tls/key.pem"
  proxy_from = ["10.200.1.0/24"]
}
