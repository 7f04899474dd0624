limits {
  allocations_per_user       = -1
  allocations_total          = -2
  permissions_per_allocation = -3
  bandwidth_per_allocation   = -4
  unauthenticated_burst      = 5
}
