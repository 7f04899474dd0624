realm = var.realm

limits {
  allocations_total = upper("x")
}
