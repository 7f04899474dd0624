http {
  listen = "0.0.0.0:8080"
}
signaling {
  token_secrets = ["0123456789abcdef0123456789abcdef"]
}
api {
  keys = ["too-short", "0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"]
}
