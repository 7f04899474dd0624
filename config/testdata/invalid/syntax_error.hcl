relay {
  min_port = 
}
