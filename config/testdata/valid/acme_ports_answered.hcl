# The challenge ports are held by listeners that answer them: tls-alpn-01
# by TURN over TLS on 443, http-01 by plain HTTP on 80.
listen {
  addresses = ["127.0.0.1"]
  tls_port  = 443
}
tls {
  acme {
    domains = ["turn.example.com"]
    storage = "/tmp/icegate-acme-test"
  }
}
http {
  listen = "127.0.0.1:80"
}
