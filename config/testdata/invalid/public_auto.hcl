# "auto" asks relay.discover_with; without servers there is nobody to ask.
relay {
  ipv4_public       = "auto"
  discover_with     = []
  discover_interval = "1s"
}
