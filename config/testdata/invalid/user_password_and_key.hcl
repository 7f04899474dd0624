auth {
  user "alice" {
    password = "wonderland"
    key      = "0123456789abcdef0123456789abcdef"
  }
  user "bob" {
  }
  user "" {
    password = "x"
  }
}
