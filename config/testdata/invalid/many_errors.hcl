# Several independent mistakes: every one is reported in one run.
realm = ""

log {
  level = "loud"
}

listen {
  port      = 70000
  addresses = []
}

relay {
  min_port  = 60000
  max_port  = 50000
  ipv4_bind = "not-an-ip"
  colour    = "blue"
}

auth {
  separator = ""
  user "alice" {
  }
}

policy {
  presets = ["office"]
  deny    = ["10.0.0.0/40"]
}

limits {
  default_lifetime = "forever"
}

metrics {
  listen = "localhost"
}
