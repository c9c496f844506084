package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/config"
)

const auditUsage = `Usage: parley audit verify [--data-dir DIR | --database-url URL]

Walks the audit log's hash chain. Exits 0 and prints the number of entries
and the head hash when every entry is intact; exits 1 naming the first
entry that was edited, deleted, inserted or moved.
`

func cmdAudit(ctx context.Context, args []string, e env) int {
	if len(args) == 0 || args[0] != "verify" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(e.stdout, auditUsage)
			return 0
		}
		fmt.Fprint(e.stderr, auditUsage)
		return 2
	}
	cfg, err := config.LoadStore("audit verify", args[1:], e.getenv, e.stderr)
	if err != nil {
		return configExit(err, e)
	}
	st, code := openStore(ctx, cfg, newLogger(cfg, e.stderr), e, true)
	if st == nil {
		return code
	}
	defer st.Close()
	res, err := audit.Verify(ctx, st)
	var broken *audit.BrokenError
	switch {
	case errors.As(err, &broken):
		fmt.Fprintf(e.stdout, "audit chain BROKEN: first broken entry is %d: %s\n", broken.Seq, broken.Reason)
		return 1
	case err != nil:
		fmt.Fprintf(e.stderr, "parley: audit verify: %v\n", err)
		return 1
	}
	fmt.Fprintf(e.stdout, "audit chain intact: %d entries, head %s\n", res.Count, res.Head)
	return 0
}
