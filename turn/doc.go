// Package turn is Parley's embedded TURN server (RFC 8656), built on
// github.com/pion/turn/v5. It relays media for participants whose networks
// block a direct path to the SFU or to each other, and it is built so that
// relaying cannot be turned against the server's own network.
//
// # Credentials
//
// Credentials follow the TURN REST API scheme: the username is
// "<expiry-unix>:<participant-id>" and the password is
// base64(HMAC-SHA1(secret, username)). The signalling server mints them
// with Mint from the secret LoadOrCreateSecret keeps in the data
// directory; the TURN server needs no user database. Its authentication
// handler refuses malformed and expired usernames and otherwise returns the
// STUN long-term key for the expected password, so Pion's
// MESSAGE-INTEGRITY check refuses a wrong or tampered password with 401.
// A new allocation needs an unexpired credential. Later requests on an
// allocation (Refresh, CreatePermission, ChannelBind) are still checked
// against the credential it was made with, expired or not: browsers keep
// an allocation's credential for its whole life and ignore the fresh ones
// signaling sends, so refusing them would cut relayed calls every TTL.
// MaxLifetime bounds an allocation's age. The participant id becomes Pion's user id:
// quotas and audit events are per participant.
//
// # Peer policy
//
// A TURN server sends datagrams wherever its clients ask. Without a
// policy, anyone holding a credential can reach the server's loopback
// services, its private network and the cloud metadata service from
// inside. coturn has had exactly these holes: CVE-2020-26262 (0.0.0.0 and
// [::] reach loopback past "no-loopback-peers") and CVE-2026-27624 (the
// IPv4-mapped form ::ffff:127.0.0.1 passes an IPv4-only loopback check).
// PeerPolicy therefore refuses everything that is not ordinary public
// unicast, from explicit tables of the IANA special-purpose registries
// over net/netip (not net.IP.IsGlobalUnicast, which calls 10.0.0.1
// global): unspecified, loopback, RFC 1918, CGNAT, link-local, multicast,
// broadcast, reserved, documentation, benchmarking, IETF protocol
// assignments, ULA, site-local, discard-only, SRv6, local-use NAT64, IPv6
// outside 2000::/3, the deprecated IPv4-compatible ::/96, and Teredo (whose
// embedded addresses are not trusted). IPv4-mapped addresses are unmapped
// before any check; 6to4 and well-known-prefix NAT64 addresses are judged
// by the IPv4 address they embed. Cloud metadata addresses are a named
// reason of their own. An operator allow-list (for example a LAN or
// 127.0.0.0/8 in tests) overrides the tables, except for metadata and
// unspecified addresses, which are never relayed to.
//
// The policy is Pion's PermissionHandler: CreatePermission for a refused
// peer gets 403 Forbidden; ChannelBind, which Pion answers with 401 when
// the handler refuses (an authenticated error response, not a challenge),
// installs nothing. Without a permission Pion relays nothing in either
// direction. As defence in depth the relay sockets check the policy again
// on every datagram and drop those to or from a refused address.
//
// TCP allocations (RFC 6062) are refused: WebRTC never uses them, and
// outgoing TCP connections to arbitrary hosts are what an attacker wants
// most from a relay. Pion implements them, applying the same permission
// handler to Connect; this package's relay address generator declines to
// create the relayed listener, and Pion answers 508. EVEN-PORT is refused
// the same way, so every relay port counts against a quota. TURN over TCP
// and TLS (client to server) is served: browsers behind restrictive
// firewalls need it.
//
// # Quotas and lifetimes
//
// Pion's QuotaHandler refuses an Allocate beyond MaxAllocationsPerParticipant
// with 486 Allocation Quota Reached. The count is kept by the relay
// sockets themselves, reserved before a socket is bound and released when
// it closes, so it follows allocations however they end (Refresh 0,
// expiry, MaxLifetime, Close) and concurrent Allocates cannot overshoot it.
// MaxAllocations bounds the whole server (508 Insufficient Capacity).
// Pion caps each granted lifetime below one hour; MaxLifetime additionally
// bounds an allocation's total age by closing its relay socket. TCP and
// TLS connections are limited in number (MaxConnections), TLS handshakes
// must finish within 10 s, and a connection without an allocation is
// closed after 30 s of silence.
//
// # Events, logs and shutdown
//
// Security events (failed authentication with its reason, refused peers
// with the policy's reason, quota refusals, allocations created and
// deleted) go to Config.OnEvent for the audit log. Pion's logs go to the
// slog logger through internal/pionlog (Pion's info at debug: it logs
// some per-packet events there); neither logs passwords, keys
// or the secret. Close stops the listeners, closes every connection and
// relay socket, waits for the package's goroutines and until Pion's are
// no longer blocked on any socket and hold no allocation.
package turn
