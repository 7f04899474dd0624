auth {
  separator = "1"
}
