package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/auth"
	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/rbac"
)

const userUsage = `Usage: parley user <command> [options]

Commands:
  add --username U [--display-name N] [--role admin|member] [--password-stdin]
                      create an account; without --password-stdin it prints a
                      one-time enrolment link (72 h) for the user
  enroll-link U       print a new enrolment link for U (replaces earlier ones)
  disable U           disable U and end all of U's sessions at once
  enable U            enable U again
  reset-mfa U         remove U's TOTP secret and recovery codes, end U's sessions
  unlock U            clear U's sign-in throttle after too many failures
  list                list the accounts

Every command also takes --data-dir or --database-url (and PARLEY_SECRET_KEY
when the deployment sets it) to find the store.
`

// operatorActor names the operator in the audit log.
func operatorActor() string {
	name := os.Getenv("SUDO_USER")
	if name == "" {
		name = os.Getenv("USER")
	}
	if name == "" {
		return "operator:cli"
	}
	return "operator:cli:" + name
}

func cmdUser(ctx context.Context, args []string, e env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		w := e.stderr
		code := 2
		if len(args) > 0 {
			w, code = e.stdout, 0
		}
		fmt.Fprint(w, userUsage)
		return code
	}
	sub := args[0]
	var username, displayName, role string
	var passwordStdin bool
	register := func(fs *flag.FlagSet) {
		if sub == "add" {
			fs.StringVar(&username, "username", "", "the new account's `name` (3-64 of a-z 0-9 . _ -)")
			fs.StringVar(&displayName, "display-name", "", "the `name` people see (default: the username)")
			fs.StringVar(&role, "role", rbac.RoleMember, "global `role`: admin or member (or a custom global role)")
			fs.BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input (one line)")
		}
	}
	cfg, rest, err := config.LoadStoreWith("user "+sub, args[1:], e.getenv, e.stderr, register)
	if err != nil {
		return configExit(err, e)
	}
	wantArgs := 1
	switch sub {
	case "add", "list":
		wantArgs = 0
	case "enroll-link", "disable", "enable", "reset-mfa", "unlock":
	default:
		fmt.Fprintf(e.stderr, "parley: unknown user command %q\n\n%s", sub, userUsage)
		return 2
	}
	if len(rest) != wantArgs {
		fmt.Fprintf(e.stderr, "parley user %s: want %d argument(s), got %d\n\n%s", sub, wantArgs, len(rest), userUsage)
		return 2
	}
	if sub == "add" && username == "" {
		fmt.Fprintf(e.stderr, "parley user add: --username is required\n")
		return 2
	}
	log := newLogger(cfg, e.stderr)
	st, authz, done, code := openPolicy(ctx, cfg, log, e)
	if st == nil {
		return code
	}
	defer done()
	svc, code := newAuthService(cfg, st, audit.New(st, nil), authz, log, e)
	if svc == nil {
		return code
	}
	actor := operatorActor()

	var opErr error
	switch sub {
	case "add":
		password := ""
		if passwordStdin {
			line, err := bufio.NewReader(io.LimitReader(e.stdin, 8192)).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				fmt.Fprintf(e.stderr, "parley user add: reading the password: %v\n", err)
				return 1
			}
			password = strings.TrimRight(line, "\r\n")
			if password == "" {
				fmt.Fprintln(e.stderr, "parley user add: --password-stdin given but standard input held no password")
				return 2
			}
		}
		u, link, err := svc.CreateAccount(ctx, auth.NewAccount{Username: username, DisplayName: displayName, Role: role, Password: password}, actor)
		if opErr = err; err == nil {
			fmt.Fprintf(e.stdout, "created %s (%s), id %s\n", u.Username, strings.Join(u.Roles, ","), u.ID)
			if link != "" {
				fmt.Fprintf(e.stdout, "one-time enrolment link (valid 72 h; hand it over privately):\n  %s\n", link)
			} else {
				fmt.Fprintln(e.stdout, "the user enrols TOTP at first sign-in")
			}
		}
	case "enroll-link":
		u, err := svc.Account(ctx, rest[0])
		if opErr = err; err == nil {
			link, err := svc.EnrollmentLink(ctx, u.ID, actor)
			if opErr = err; err == nil {
				fmt.Fprintf(e.stdout, "one-time enrolment link for %s (valid 72 h):\n  %s\n", u.Username, link)
			}
		}
	case "disable", "enable":
		if opErr = svc.SetDisabled(ctx, rest[0], sub == "disable", actor); opErr == nil {
			fmt.Fprintf(e.stdout, "%sd %s\n", sub, rest[0])
		}
	case "reset-mfa":
		if opErr = svc.ResetMFA(ctx, rest[0], actor); opErr == nil {
			fmt.Fprintf(e.stdout, "reset MFA of %s: sessions ended; TOTP is enrolled again at the next sign-in\n", rest[0])
		}
	case "unlock":
		had, err := svc.Unlock(ctx, rest[0], actor)
		if opErr = err; err == nil {
			if had {
				fmt.Fprintf(e.stdout, "unlocked %s\n", rest[0])
			} else {
				fmt.Fprintf(e.stdout, "%s was not throttled\n", rest[0])
			}
		}
	case "list":
		accounts, err := svc.ListAccounts(ctx)
		if opErr = err; err == nil {
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USERNAME\tDISPLAY NAME\tROLE\tSTATE\tMFA\tLAST SIGN-IN")
			for _, a := range accounts {
				state := "active"
				switch {
				case a.Disabled:
					state = "disabled"
				case !a.Activated:
					state = "awaiting enrolment"
				}
				mfa := "no"
				if a.MFAEnabled {
					mfa = "totp"
				}
				last := "never"
				if !a.LastLogin.IsZero() {
					last = a.LastLogin.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Username, a.DisplayName, strings.Join(a.Roles, ","), state, mfa, last)
			}
			tw.Flush()
		}
	}
	if opErr != nil {
		fmt.Fprintf(e.stderr, "parley user %s: %v\n", sub, opErr)
		if errors.Is(opErr, auth.ErrNoSuchUser) || errors.Is(opErr, auth.ErrUsernameTaken) || errors.Is(opErr, rbac.ErrLastAdmin) ||
			errors.Is(opErr, auth.ErrInvalidUsername) || errors.Is(opErr, auth.ErrInvalidDisplayName) ||
			errors.Is(opErr, auth.ErrInvalidRole) || isPolicyError(opErr) {
			return 2
		}
		return 1
	}
	return 0
}

// isPolicyError is true for a refused password.
func isPolicyError(err error) bool {
	for _, p := range []error{auth.ErrPasswordTooShort, auth.ErrPasswordTooLong, auth.ErrPasswordCommon, auth.ErrPasswordIsUsername, auth.ErrPasswordInvalid} {
		if errors.Is(err, p) {
			return true
		}
	}
	return false
}
