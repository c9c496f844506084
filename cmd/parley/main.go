// Command parley is the Parley meeting server: one binary with the
// subcommands serve, audit, healthcheck and version.
//
// Exit status: 0 on success, 1 on a runtime failure (or a broken audit
// chain), 2 on a usage or configuration error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/parley-meet/parley/config"
)

const usage = `Usage: parley <command> [options]

Commands:
  serve          run the meeting server (HTTPS; see parley serve --help)
  user           manage accounts (add, enroll-link, disable, enable, reset-mfa, unlock, list)
  role           list roles, define custom room roles
  audit verify   check the hash chain of the security audit log
  healthcheck    ask a local server whether it is ready (for container health checks)
  version        print the version

Options of every command can be given as flags, PARLEY_* environment
variables or keys of a YAML file (--config); "parley <command> --help"
lists them.
`

// env carries what a command sees of its process, so tests can run
// commands in-process.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{getenv: os.Getenv, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

// run executes one command and returns the exit status.
func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], e)
	case "audit":
		return cmdAudit(ctx, args[1:], e)
	case "user":
		return cmdUser(ctx, args[1:], e)
	case "role":
		return cmdRole(ctx, args[1:], e)
	case "healthcheck":
		return cmdHealthcheck(ctx, args[1:], e)
	case "version", "--version":
		fmt.Fprintln(e.stdout, "parley", version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
		return 0
	default:
		fmt.Fprintf(e.stderr, "parley: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// configExit turns a configuration loading error into an exit status.
func configExit(err error, e env) int {
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	fmt.Fprintf(e.stderr, "parley: %v\n", err)
	return 2
}

func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}
