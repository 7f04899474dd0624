listen {
  proxy_from = ["10.0.0.5", "10.1.0.0/33", "0.0.0.0/0", "nginx"]
  tcp        = false
  tls        = false
}
http {
  proxy_from = ["::/0", "192.0.2.7/24"]
}
