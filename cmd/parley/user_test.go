package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/parley-meet/parley/store"
	"github.com/parley-meet/parley/store/storetest"
)

// runWithStdin runs a command in-process with the given standard input.
func runWithStdin(args []string, stdin string) (int, string, string) {
	var out, errOut syncBuffer
	code := run(context.Background(), args, env{getenv: func(string) string { return "" },
		stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut})
	return code, out.String(), errOut.String()
}

func TestUserCommands(t *testing.T) {
	storetest.Each(t, func(t *testing.T, tg storetest.Target) {
		o := tg.Options(t)
		dataDir := o.DataDir
		if dataDir == "" {
			dataDir = t.TempDir()
		}
		where := []string{"--data-dir", dataDir}
		if o.DatabaseURL != "" {
			where = append(where, "--database-url", o.DatabaseURL)
		}
		user := func(stdin string, args ...string) (int, string, string) {
			return runWithStdin(append(append([]string{"user"}, args...), where...), stdin)
		}
		code, out, errOut := user("", "add", "--username", "Alice", "--role", "admin")
		if code != 0 || !regexp.MustCompile(`https://localhost:8443/enroll#[A-Za-z0-9_-]{43}`).MatchString(out) {
			t.Fatalf("add with link: %d %q %q", code, out, errOut)
		}
		if code, out, _ := user("a strong enough passphrase\n", "add", "--username", "bob", "--password-stdin", "--display-name", "Bob B."); code != 0 || strings.Contains(out, "enroll#") {
			t.Errorf("add with password: %d %q", code, out)
		}
		for _, bad := range [][]string{
			{"add", "--username", "alice"},                        // taken, case-insensitively
			{"add", "--username", "a"},                            // too short
			{"add", "--username", "x y z"},                        // bad characters
			{"add", "--username", "carol", "--role", "superuser"}, // no such role
			{"add"}, // no username
			{"disable", "nobody"},
			{"frobnicate", "alice"},
			{"disable"},
			{"disable", "alice"}, // the only admin
		} {
			if code, out, errOut := user("", bad...); code != 2 {
				t.Errorf("%v: exit %d, want 2 (%q %q)", bad, code, out, errOut)
			}
		}
		if code, _, errOut := user("password1234\n", "add", "--username", "dave", "--password-stdin"); code != 2 || !strings.Contains(errOut, "common") {
			t.Errorf("common password: %d %q", code, errOut)
		}
		for _, args := range [][]string{{"disable", "bob"}, {"enable", "BOB"}, {"reset-mfa", "bob"}, {"unlock", "bob"}, {"enroll-link", "bob"}} {
			if code, out, errOut := user("", args...); code != 0 {
				t.Errorf("%v: %d %q %q", args, code, out, errOut)
			}
		}
		code, out, _ = user("", "list")
		if code != 0 || !strings.Contains(out, "alice") || !strings.Contains(out, "awaiting enrolment") || !strings.Contains(out, "Bob B.") {
			t.Errorf("list: %d\n%s", code, out)
		}
		code, out, _ = runWithStdin(append([]string{"audit", "verify"}, where...), "")
		if code != 0 {
			t.Errorf("audit after user commands: %d %s", code, out)
		}
		for _, action := range []string{"user.create", "user.disable", "user.enable", "user.reset_mfa", "user.unlock", "user.enroll_link"} {
			db := storetest.DB(t, store.Options{DataDir: dataDir, DatabaseURL: o.DatabaseURL})
			var n int
			if err := db.QueryRow(`SELECT count(*) FROM audit_log WHERE action = $1 AND actor LIKE 'operator:cli%'`, action).Scan(&n); err != nil || n == 0 {
				t.Errorf("no audit entry %s by the operator (%d, %v)", action, n, err)
			}
		}
	})
}

func TestRoleCommands(t *testing.T) {
	dir := t.TempDir()
	role := func(args ...string) (int, string, string) {
		return runWithStdin(append(append([]string{"role"}, args...), "--data-dir", dir), "")
	}
	if code, out, errOut := role("define", "interpreter", "room.join", "room.chat", "room.publish"); code != 0 || !strings.Contains(out, "interpreter") {
		t.Fatalf("define: %d %q %q", code, out, errOut)
	}
	code, out, _ := role("list")
	if code != 0 || !regexp.MustCompile(`room\s+interpreter\s+room.chat room.join room.publish`).MatchString(out) ||
		!regexp.MustCompile(`global\s+admin`).MatchString(out) || !regexp.MustCompile(`room\s+host`).MatchString(out) {
		t.Errorf("list: %d\n%s", code, out)
	}
	for _, bad := range [][]string{
		{"define", "Bad Name", "room.join"},
		{"define", "x", "admin.users"}, // not a room action
		{"define", "x"},                // no actions
		{"define", "admin", "room.join"},
		{"frobnicate"},
	} {
		if code, _, _ := role(bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
	if code, out, _ := runWithStdin([]string{"audit", "verify", "--data-dir", dir}, ""); code != 0 || !strings.Contains(out, "intact") {
		t.Errorf("audit: %d %s", code, out)
	}
}
