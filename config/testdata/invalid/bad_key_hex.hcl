auth {
  user "short" {
    key = "0x1234"
  }
  user "nothex" {
    key = "zz23456789abcdef0123456789abcdef"
  }
  user "long" {
    key = "0123456789abcdef0123456789abcdef00"
  }
  user "twoprefixes" {
    key = "0x0X0123456789abcdef0123456789abcdef"
  }
}
