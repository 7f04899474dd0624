metrics {
  listen = "localhost:http"
}
