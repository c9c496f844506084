// Package cluster runs Parley as one node of several (multi-node mode,
// --redis-url): the node registry, room placement and ownership, the
// signaling relay between the node holding a client's socket and the node
// running its meeting, calls between nodes, and the authorization policy
// watcher. Coordination state lives in Redis and is all soft: it expires
// with the nodes that wrote it, and nodes write it again when Redis comes
// back empty. Durable state stays in PostgreSQL.
package cluster
