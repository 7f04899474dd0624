tls {
  cert_file = "testdata/tls/cert.pem"
  key_file  = "testdata/tls/other-key.pem"
}
