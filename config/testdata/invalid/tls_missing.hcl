tls {
  cert_file = "testdata/tls/no-such-cert.pem"
  key_file  = "testdata"
}
