auth {
  user {
    password = "x"
  }
  user "a" "b" {
    password = "y"
  }
}
