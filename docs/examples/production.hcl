# A public TURN server for WebRTC, on a host whose interfaces carry its
# public addresses (no NAT). Start with:  icegate serve -config production.hcl
# Check after editing with:               icegate config check production.hcl

realm = "turn.example.com"

# Give live calls a minute to finish on restart.
shutdown_grace = "60s"

log {
  level  = "info"
  format = "json"
}

listen {
  # Every interface, both families. Browsers reach the server at
  # turn:turn.example.com:3478 and turns:turn.example.com:443?transport=tcp.
  addresses = ["0.0.0.0", "::"]
  port      = 3478
  # 443 gets through firewalls that only let HTTPS out. Binding it needs
  # CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE).
  tls_port = 443
}

tls {
  # The certificate must name the host clients use in turns: URLs.
  # certbot renews these in place; icegate picks up the new pair.
  cert_file       = "/etc/letsencrypt/live/turn.example.com/fullchain.pem"
  key_file        = "/etc/letsencrypt/live/turn.example.com/privkey.pem"
  reload_interval = "1m"
}

relay {
  # Open these ports (UDP) in the firewall. 10,000 ports is plenty: each
  # allocation takes one.
  min_port = 50000
  max_port = 59999
  # The addresses on the interfaces are public: nothing to advertise.
}

auth {
  # Time-limited credentials minted by the application server with the
  # first secret (HMAC-SHA1, the TURN REST API). To rotate: put the new
  # secret first and reload (SIGHUP); the old one still accepts credentials
  # already handed out. Remove it after the credential lifetime has passed.
  # Generate a secret with: openssl rand -base64 32
  secrets = [
    "9wq3Vd8kz1uJ0pX7yN2bR5tL4mC6hF0sA+eG1iK3oQ=",
    "p2Xr8Tn4Wz6Ub1Ye3Ic5Oa7Sd9Gf0Hj2Kl4Zx6Cv8Bm=",
  ]
  # Never run a public server with a throwaway secret.
  ephemeral_secret = false
}

limits {
  # A browser call uses one or two allocations; 10 leaves room for
  # several tabs.
  allocations_per_user = 10
  allocations_total    = 20000
  # Cap each allocation at 2 Mbit/s each way (250,000 bytes/s): enough
  # for HD video, not for bulk transfer through your server.
  bandwidth_per_allocation = 250000
  max_lifetime             = "1h"
}

metrics {
  # Scraped by a Prometheus on the same host.
  listen = "127.0.0.1:9641"
}

http {
  # Signaling and credentials for the app at https://app.example.com, over
  # HTTPS with the same certificate: wss://turn.example.com:8443/ws.
  listen    = ":8443"
  cert_file = "/etc/letsencrypt/live/turn.example.com/fullchain.pem"
  key_file  = "/etc/letsencrypt/live/turn.example.com/privkey.pem"
  # The names browsers reach this server by; a request naming another host
  # (a DNS-rebinding page) gets 421. The certificate's names and turn_host
  # are accepted anyway; list any other name clients use here.
  hosts = ["turn.example.com"]
}

signaling {
  # Only the app's pages may open the WebSocket or fetch credentials.
  allowed_origins = ["https://app.example.com"]
  # The app's backend mints tokens (HS256 JWTs: sub, exp, rooms) with this;
  # `icegate token -config production.hcl -user alice` does too.
  token_secrets = ["Jm4tR8vX2qL6wZ0yB3nD7fH1kP5sU9cE+aG2iO4eT6="]
  # The name in the certificate, for turns: URLs.
  turn_host = "turn.example.com"
}
