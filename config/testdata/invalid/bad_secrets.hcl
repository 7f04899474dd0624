auth {
  secrets   = ["", "short", "short", "a-long-enough-secret-value"]
  separator = "::"
}
