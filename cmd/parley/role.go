package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/config"
)

const roleUsage = `Usage: parley role <command> [options]

Commands:
  list                        every role and what it may do
  define ROLE ACTION...       define (or redefine) a room role: ROLE is
                              [a-z][a-z0-9_-]{0,31}; ACTIONs are room.* and
                              recording.* actions

Custom roles are policy data: define one here, then give it to people with
PUT /api/v1/rooms/{id}/members/{username} {"role": ROLE}. A running server
applies the change within 5 s; the nodes of a cluster at once when the
command is given their --redis-url (PARLEY_REDIS_URL).
`

func cmdRole(ctx context.Context, args []string, e env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		w, code := e.stderr, 2
		if len(args) > 0 {
			w, code = e.stdout, 0
		}
		fmt.Fprint(w, roleUsage)
		return code
	}
	sub := args[0]
	cfg, rest, err := config.LoadStoreWith("role "+sub, args[1:], e.getenv, e.stderr, nil)
	if err != nil {
		return configExit(err, e)
	}
	switch {
	case sub == "list" && len(rest) == 0:
	case sub == "define" && len(rest) >= 2:
	default:
		fmt.Fprint(e.stderr, roleUsage)
		return 2
	}
	log := newLogger(cfg, e.stderr)
	st, authz, done, code := openPolicy(ctx, cfg, log, e)
	if st == nil {
		return code
	}
	defer done()
	if sub == "define" {
		role, actions := rest[0], rest[1:]
		if err := authz.DefineRoomRole(ctx, role, actions); err != nil {
			fmt.Fprintf(e.stderr, "parley role define: %v\n", err)
			return 2
		}
		if _, err := audit.New(st, nil).Record(ctx, audit.Event{Actor: operatorActor(), Action: "rbac.role_define",
			Target: "role:" + role, Outcome: audit.Success, Details: map[string]any{"actions": actions}}); err != nil {
			fmt.Fprintf(e.stderr, "parley: audit log: %v\n", err)
			return 1
		}
		fmt.Fprintf(e.stdout, "room role %s: %s\n", role, strings.Join(actions, " "))
		return 0
	}
	defs := authz.RoleDefinitions()
	for _, scope := range []string{"global", "room"} {
		names := make([]string, 0, len(defs[scope]))
		for name := range defs[scope] {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			fmt.Fprintf(e.stdout, "%-6s %-12s %s\n", scope, name, strings.Join(defs[scope][name], " "))
		}
	}
	return 0
}
