http {
  hosts = ["ok.example.com", "192.0.2.1", "[::1]", "a.*.example.com", "example.com:8080", "https://x.example.com", "ok.example.com", "bad_host!", "*"]
}
