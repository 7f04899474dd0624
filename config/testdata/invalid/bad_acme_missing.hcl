tls {
  acme {
    storage = ""
  }
}
