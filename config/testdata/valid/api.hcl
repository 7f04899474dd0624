# The server API on, on the default loopback listener.
api {
  keys = [
    "0123456789abcdef0123456789abcdef",
    "fedcba9876543210fedcba9876543210fedcba9876543210",
  ]
}
