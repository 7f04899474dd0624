listen {
  port = 3478
