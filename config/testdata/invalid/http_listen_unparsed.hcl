# An http.listen that does not parse: its error alone, no warning that it is
# reachable from other hosts without signaling.token_secrets.
http {
  listen = "8080"
}
