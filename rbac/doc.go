// Package rbac decides every right in Parley. It is the one package that
// evaluates permissions and the only one that knows what a role name
// means; everything else asks an Authorizer (Can, Permissions) and never
// compares role strings itself.
//
// Decisions are Casbin's: an RBAC-with-domains model (model.conf, embedded
// in the binary) over a policy kept in the store's casbin_rule table.
// Domains are "room:<id>" for a room and "*" for the global domain. A room
// role's permissions are written once, in the template domain "room", and
// apply in each room where a subject holds the role; a global role's
// permissions are written in "*" and apply everywhere. Only admin is a
// global role that grants room actions; member (global) may create rooms.
// Custom room roles are policy data (DefineRoomRole), not code.
//
// Subjects are "user:<id>" and "guest:<id>", room ids are opaque strings;
// both are checked against strict patterns before they reach Casbin or the
// store, so no name a client chooses can ever become a policy line.
//
// Every change is written to the store in one transaction, then applied to
// the in-memory enforcer, then announced on an in-process change bus
// (Subscribe) so that live sessions re-check their rights.
//
// Several processes sharing one database: each Authorizer holds the policy
// in memory and sees another process's changes only after Reload. Until a
// Redis watcher replaces the in-process bus, a multi-node deployment must
// call Reload when another node announces a change (or periodically).
//
// This package never writes SQL (the store does), never logs secrets and
// never caches whether a user is disabled: that is asked at decision time.
package rbac
