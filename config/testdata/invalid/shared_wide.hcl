relay {
  mode     = "shared"
  min_port = 50000
  max_port = 51000
}
