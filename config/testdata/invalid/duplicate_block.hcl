log {
  level = "debug"
}

log {
  level = "warn"
}
