# A signaling cluster on Redis, every attribute set.
cluster {
  redis_url    = "rediss://icegate:s3cret@redis.example.com:6380/2"
  node_id      = "node-a.eu_1"
  node_timeout = "3s"
  key_prefix   = "icegate-prod:"
  user_quota   = "cluster"
}

# Steering TURN load across the nodes needs a secret every node shares and
# the name other nodes send clients to (docs/cluster.md).
auth {
  secrets = ["cluster-shared-secret-0123456789abcdef"]
}
signaling {
  turn_host = "turn-a.example.com"
}
