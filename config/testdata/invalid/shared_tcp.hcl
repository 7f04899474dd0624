relay {
  mode     = "shared"
  min_port = 50000
  max_port = 50002
  tcp      = true
}
