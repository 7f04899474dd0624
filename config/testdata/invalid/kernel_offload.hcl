relay {
  kernel_offload            = "yes"
  kernel_offload_interfaces = ["eth0", "eth0", "a/b"]
}
