tls {
  acme {
    domains = ["turn.example.com", "signal.example.com"]
    email   = "ops@example.com"
    storage = "/var/lib/icegate/acme"
  }
}
http {
  listen = ":443"
  acme   = true
}
listen {
  tls_port = 443
}
signaling {
  token_secrets = ["a-token-secret-of-enough-length-0123456789"]
}
