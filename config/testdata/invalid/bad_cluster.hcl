cluster {
  redis_url    = "http://:hunter2@redis.example.com:6379"
  node_id      = "node a"
  node_timeout = "500ms"
  key_prefix   = ""
  user_quota   = "everywhere"
}
