# A TURN server on a cloud VM behind 1:1 NAT (AWS EC2, GCP, Azure): the
# interface has a private address, and the provider maps a public (elastic)
# address to it. Clients must be told the public address, so set
# relay.ipv4_public (coturn: external-ip=203.0.113.10/10.0.0.5).

realm = "turn.example.com"

listen {
  # IPv4 only: this VM has no IPv6. Listen on every interface; the
  # provider forwards the public address's traffic to the private one.
  addresses = ["0.0.0.0"]
}

relay {
  min_port = 49152
  max_port = 65535

  # Bind relays on every IPv4 interface (or the private address,
  # "10.0.0.5", to pin one interface)...
  ipv4_bind = "0.0.0.0"
  # ...and give clients the public address mapped to it. 203.0.113.10 is a
  # documentation address: put your elastic IP here.
  ipv4_public = "203.0.113.10"

  # No IPv6 relays.
  ipv6_bind = ""
}

auth {
  secrets          = ["change-me-to-a-long-random-secret"]
  ephemeral_secret = false
}

policy {
  # Other VMs of the same VPC are private addresses, denied by default.
  # Allow just the subnet of the media servers the clients must reach.
  allow = ["10.0.2.0/24"]
  # And never the instance metadata service (already denied by default;
  # listed here so a wider allow cannot reopen it).
  deny = ["169.254.169.254"]
}
