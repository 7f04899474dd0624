# Only max_lifetime is written: the problem is reported there.
limits {
  max_lifetime = "5m"
}
