http {
  listen    = "8080"
  cert_file = "testdata/tls/cert.pem"
}

signaling {
  allowed_origins     = ["https://app.example.com/", "ftp://x", "https://a.*.example.com", "*"]
  token_secrets       = ["short", "short", ""]
  turn_host           = "turn:example.com"
  credential_ttl      = "10s"
  max_connections     = 0
  max_message_bytes   = 100
  messages_per_second = 20
  messages_burst      = 5
  peers_per_room      = 1
  rooms_per_peer      = 0
  send_queue          = 1
  resume_grace        = "1h"
  ping_interval       = "60s"
}
