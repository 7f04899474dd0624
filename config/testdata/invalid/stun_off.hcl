stun {
  alternate_public = "203.0.113.11"
  rfc3489          = true
  alternate_port   = 0
}
