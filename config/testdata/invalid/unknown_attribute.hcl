# A misspelt attribute is an error, not silently ignored.
relay {
  min_prot = 50000
}
realm_name = "x"
