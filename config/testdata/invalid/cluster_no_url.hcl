cluster {
  node_timeout = "1h"
}
