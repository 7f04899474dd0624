auth {
  user "alice" {
    password = "one"
  }
  user "bob" {
    password = "two"
  }
  user "alice" {
    password = "three"
  }
}
