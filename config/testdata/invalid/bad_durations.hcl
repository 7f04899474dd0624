shutdown_grace = "-1s"

tls {
  reload_interval = "soon"
}

limits {
  default_lifetime = "5s"
  max_lifetime     = "48h"
}
