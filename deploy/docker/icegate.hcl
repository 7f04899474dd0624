# icegate in a container (deploy/docker/Dockerfile, compose.yaml).
# Mount your own over /etc/icegate/icegate.hcl; `icegate config default`
# prints every setting with its default. docs/docker.md explains the ports.

listen {
  port     = 3478
  tls_port = 5349
}

relay {
  # With host networking (compose.yaml) the relay uses the host's
  # addresses and the whole default range needs no mapping. With mapped
  # ports, keep the range small and map exactly it, or use
  # relay.mode = "shared" (docs/docker.md).
  min_port = 49152
  max_port = 65535
  # Behind NAT, set the address clients reach:
  # ipv4_public = "203.0.113.10"
}

auth {
  # Replace with your own: a shared secret for time-limited credentials
  # (icegate cred), as coturn's static-auth-secret.
  # secrets = ["change-me-to-a-long-random-secret"]
}

http {
  # Signaling and the test page, on this host only until
  # signaling.token_secrets is set (docs/signaling.md).
  listen = "127.0.0.1:8080"
}
