listen {
  addresses = ["10.0.0.5"]
}

relay {
  ipv4_public = "203.0.113.10"
  min_port    = 3000
}

stun {
  alternate_address = "10.0.0.6"
  alternate_public  = "203.0.113.10"
}
