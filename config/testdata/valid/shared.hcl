# Docker on a few ports: three shared relay ports for every allocation.
relay {
  mode     = "shared"
  min_port = 50000
  max_port = 50002
}
