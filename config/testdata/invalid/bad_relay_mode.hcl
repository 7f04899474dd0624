relay {
  mode = "multiplex"
}
