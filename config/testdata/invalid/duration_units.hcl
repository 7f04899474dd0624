shutdown_grace = "10"

tls {
  reload_interval = "0s"
}
