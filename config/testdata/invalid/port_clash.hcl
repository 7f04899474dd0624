listen {
  port = 5349
}

relay {
  min_port = 80
  max_port = 70000
}
