# RFC 5780 on a cloud VM behind 1:1 NAT: two private addresses, two public.
listen {
  addresses = ["10.0.0.5", "::"]
}

relay {
  ipv4_public = "203.0.113.10"
}

stun {
  alternate_address = "10.0.0.6"
  alternate_port    = 3480
  alternate_public  = "203.0.113.11"
  rfc3489           = true
}
