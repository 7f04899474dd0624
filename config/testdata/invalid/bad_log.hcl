log {
  level  = "verbose"
  format = "xml"
}
