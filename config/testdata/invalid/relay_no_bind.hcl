# Both families switched off, and a public address for a family that is off.
relay {
  ipv4_bind   = ""
  ipv4_public = "203.0.113.10"
  ipv6_bind   = ""
}
