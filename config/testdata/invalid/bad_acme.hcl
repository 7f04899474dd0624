tls {
  cert_file = "testdata/tls/cert.pem"
  key_file  = "testdata/tls/key.pem"
  acme {
    domains    = ["turn.example.com", "*.example.com", "192.0.2.1"]
    email      = "nobody"
    ca         = "http://acme.example.com/directory"
    challenges = ["dns-01"]
    http_listen = "80"
    renewal_window = 1.5
    check_interval = "10ms"
  }
}
http {
  cert_file = "testdata/tls/cert.pem"
  key_file  = "testdata/tls/key.pem"
  acme      = true
}
