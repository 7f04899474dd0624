# The kernel fast path required, on two named interfaces.
relay {
  kernel_offload            = "on"
  kernel_offload_interfaces = ["eth0", "eth1"]
}
