package config

import (
	"bytes"
	"strings"
	"testing"
)

// clusterEnv is what every node of a cluster needs besides --redis-url.
var clusterEnv = map[string]string{
	"PARLEY_DATABASE_URL": "postgres://parley@db.internal/parley",
	"PARLEY_SECRET_KEY":   "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	"PARLEY_TURN_SECRET":  strings.Repeat("ab", 32),
	// Recording's own multi-node rules are tested with it; off here.
	"PARLEY_RECORDING": "false",
}

func TestClusterOptions(t *testing.T) {
	c, err := Load("serve", []string{"--redis-url", "redis://:pw@redis.internal:6379/2", "--node-id", "node-1.eu_west", "--node-capacity", "250"},
		envOf(clusterEnv), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Clustered() || c.RedisURL != "redis://:pw@redis.internal:6379/2" || c.NodeID != "node-1.eu_west" || c.NodeCapacity != 250 {
		t.Errorf("cluster options: clustered %v url %q id %q capacity %d", c.Clustered(), c.RedisURL, c.NodeID, c.NodeCapacity)
	}
	c, err = Load("serve", nil, envOf(nil), &bytes.Buffer{})
	if err != nil || c.Clustered() || c.NodeID != "" || c.NodeCapacity != 1000 {
		t.Errorf("defaults: %v %+v", err, c)
	}
}

func TestClusterOptionsRefused(t *testing.T) {
	without := func(k string) map[string]string {
		m := map[string]string{}
		for kk, v := range clusterEnv {
			if kk != k {
				m[kk] = v
			}
		}
		return m
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"not redis", clusterEnv, []string{"--redis-url", "http://redis.internal"}, "--redis-url"},
		{"no host", clusterEnv, []string{"--redis-url", "redis://"}, "names no host"},
		{"SQLite", without("PARLEY_DATABASE_URL"), []string{"--redis-url", "redis://r:6379"}, "PostgreSQL"},
		{"no shared secret key", without("PARLEY_SECRET_KEY"), []string{"--redis-url", "redis://r:6379"}, "PARLEY_SECRET_KEY"},
		{"no shared TURN secret", without("PARLEY_TURN_SECRET"), []string{"--redis-url", "redis://r:6379"}, "PARLEY_TURN_SECRET"},
		{"bad node id", clusterEnv, []string{"--redis-url", "redis://r:6379", "--node-id", "a b"}, "--node-id"},
		{"long node id", clusterEnv, []string{"--redis-url", "redis://r:6379", "--node-id", strings.Repeat("n", 65)}, "--node-id"},
		{"capacity", clusterEnv, []string{"--redis-url", "redis://r:6379", "--node-capacity", "0"}, "--node-capacity"},
	} {
		_, err := Load("serve", tc.args, envOf(tc.env), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw@") {
			t.Errorf("%s: the error shows the Redis password: %v", tc.name, err)
		}
	}
}
