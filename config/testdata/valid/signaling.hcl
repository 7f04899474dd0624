# The http and signaling blocks with every attribute set to a non-default value.
http {
  listen    = "0.0.0.0:8443"
  cert_file = "testdata/tls/cert.pem"
  key_file  = "testdata/tls/key.pem"
  test_page = false
  hosts     = ["signal.example.com", "*.example.org"]
}

signaling {
  allowed_origins     = ["https://app.example.com", "https://*.example.org", "http://localhost:3000"]
  token_secrets       = ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"]
  token_audience      = "icegate.example.com"
  max_token_lifetime  = "24h"
  turn_host           = "turn.example.com"
  credential_ttl      = "12h"
  max_connections     = 500
  max_message_bytes   = 16384
  messages_per_second = 10
  messages_burst      = 10
  peers_per_room      = 2
  rooms_per_peer      = 1
  send_queue          = 16
  resume_grace        = "0s"
  ping_interval       = "10s"
  turn_events         = false
}
