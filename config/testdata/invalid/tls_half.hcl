tls {
  cert_file = "testdata/tls/cert.pem"
}
