package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"icegate/config"
	"icegate/signaling"
	"icegate/signaling/redisbus"
)

// signalingBus returns the bus signaling runs on: nil (the in-process
// default) without a cluster block, else the Redis bus for this node. Redis
// must answer at start; once running, the bus rides out Redis going away
// (messages get cluster-unavailable meanwhile).
//
// client is the cluster's Redis client (clusterClient), which the bus
// shares with the usage record and leaves for serve to close.
func signalingBus(c *config.Cluster, client rueidis.Client, log *slog.Logger, reg prometheus.Registerer) (signaling.Bus, error) {
	if c == nil {
		return nil, nil
	}
	id := nodeID(c)
	b, err := redisbus.New(redisbus.Options{URL: c.RedisURL, NodeID: id, NodeTimeout: c.NodeTimeoutDuration,
		Prefix: c.KeyPrefix, Logger: log, Registerer: reg, Client: client})
	if err != nil {
		return nil, fmt.Errorf("cluster.redis_url %s: %w", c.Redis, err)
	}
	log.Info("signaling cluster", "node", id, "redis", c.Redis, "node_timeout", c.NodeTimeoutDuration)
	return b, nil
}

// clusterClient connects to the cluster's Redis: nil without a cluster
// block. Redis must answer at start. One client serves the signaling bus
// and the usage record; serve closes it after both.
func clusterClient(c *config.Cluster) (rueidis.Client, error) {
	if c == nil {
		return nil, nil
	}
	client, err := redisbus.NewClient(c.RedisURL, 0)
	if err != nil {
		return nil, fmt.Errorf("cluster.redis_url %s: %w", c.Redis, err)
	}
	return client, nil
}

// nodeID is this process's name in a signaling cluster: cluster.node_id,
// or when that is "" the host name plus a random suffix ("web-3-1f9c2a"),
// so two processes on one host, or a restarted one, never share a name
// while the old one's members are still in Redis. It is chosen here, when
// `icegate serve` starts, not in config: `config check` stays
// deterministic. The result passes config's node_id rule (letters,
// digits, ".", "_", "-", at most 64 bytes).
func nodeID(c *config.Cluster) string {
	if c != nil && c.NodeID != "" {
		return c.NodeID
	}
	host, err := os.Hostname()
	if err != nil {
		host = ""
	}
	return defaultNodeID(host, randomSuffix())
}

// defaultNodeID joins a host name, made to fit node_id's rule, and suffix.
func defaultNodeID(host, suffix string) string {
	host = strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '-'
	}, host)
	// 64 bytes in all: the suffix and its "-" keep their room.
	if limit := 64 - 1 - len(suffix); len(host) > limit {
		host = host[:limit]
	}
	host = strings.Trim(host, "-.")
	if host == "" {
		host = "icegate"
	}
	return host + "-" + suffix
}

// randomSuffix is 6 hex digits: 16 million values, enough that two
// processes starting on one host do not collide.
func randomSuffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
