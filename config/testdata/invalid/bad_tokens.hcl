signaling {
  token_secrets      = ["0123456789abcdef0123456789abcdef"]
  token_audience     = "bad\u0007audience"
  max_token_lifetime = "2y"
}
