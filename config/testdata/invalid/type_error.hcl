listen {
  port      = "three"
  addresses = "0.0.0.0"
  udp       = "yes please"
}

relay {
  min_port = 50000.5
}

limits {
  allocations_total = null
}
