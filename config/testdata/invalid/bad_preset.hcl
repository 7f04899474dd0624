policy {
  presets = ["lan", "wan", "Loopback"]
}
