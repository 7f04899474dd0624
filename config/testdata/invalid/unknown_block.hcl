# Blocks icegate does not know are errors.
turn {
  port = 3478
}

listen {
  ssl {
  }
}
