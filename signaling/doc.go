// Package signaling owns the meetings of one process: the room state
// machine (lobby, participants, moderation, chat, lock, end) behind each
// `wss://…/api/v1/rooms/{id}/signal` socket, and the JSON protocol spoken on
// it (docs/protocol.md).
//
// A Hub holds the rooms, made on first join and dropped when empty. Each
// socket has one reader (the goroutine that calls Serve) and a bounded
// queue of outgoing messages, written by a writer goroutine that runs only
// while there is something to write; a slow client is closed instead of
// slowing its room. Every privileged message is checked with rbac at the
// moment it arrives, and every refusal and every act of moderation is
// audited. Changes of rights published on rbac's bus are applied to live
// sockets at once; the sessions behind the sockets are confirmed with auth
// once a second, and the sockets of ended sessions are closed (1008).
//
// It drives the SFU through the small Media interface (SFUMedia adapts
// sfu.SFU) and never looks inside media. It never touches SQL (the caller
// passes the room's settings; rbac, auth and audit do their own storage),
// never speaks HTTP (server/ authenticates and upgrades), never compares
// role names (rbac decides), and never sends a client internal error text.
package signaling
