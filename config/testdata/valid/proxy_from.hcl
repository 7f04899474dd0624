# TURN over TCP and TLS, and HTTPS, behind haproxy or nginx stream on
# 10.0.0.5 and 2001:db8::5, which send the PROXY protocol.
listen {
  proxy_from = ["10.0.0.5", "2001:db8::5/128"]
}
http {
  listen     = "127.0.0.1:8080"
  proxy_from = ["10.0.0.5", "127.0.0.1"]
}
