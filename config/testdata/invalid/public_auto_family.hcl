# One list serves both families, and a literal address of the other family
# is skipped: ipv6_public = "auto" with only IPv4 servers has nobody to ask,
# and would pass config check only to stop the start.
relay {
  ipv4_public   = "auto"
  ipv6_public   = "auto"
  discover_with = ["192.0.2.1:3478", "192.0.2.2:3478", "192.0.2.3:3478"]
}
