# A signaling cluster on Redis, every attribute set.
cluster {
  redis_url    = "rediss://icegate:s3cret@redis.example.com:6380/2"
  node_id      = "node-a.eu_1"
  node_timeout = "3s"
  key_prefix   = "icegate-prod:"
}
