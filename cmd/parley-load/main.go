// Command parley-load is a load generator for Parley: it signs in, creates
// a room and drives synthetic participants through the public signaling
// protocol and the SFU, then reports forwarded packets, loss, one-way
// latency, join times and, with -server-pid, the server's CPU and memory.
//
// Several nodes of one cluster (multi-node mode) may be given, as
// comma-separated -url (and -server-pid, in the same order): the clients'
// sockets are spread over them round-robin, and the report has a line per
// node (its clients, the meetings it runs, its CPU and memory).
//
// Test tool: it sends packets only to the server's address (use loopback)
// and gathers ICE candidates on lo only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// config is one run's parameters (the command line).
type config struct {
	URL, Username, Password, TOTPSecret, TOTPSecretFile, Token string
	Insecure                                                   bool
	Scenario                                                   string
	N, K, RoomSize, Rooms                                      int
	Rate                                                       float64
	Duration, Warmup                                           time.Duration
	Room, ServerPID, JSON                                      string
}

var scenarios = map[string]func(context.Context, *run) error{
	"fanout":     runFanout,
	"meeting":    runMeeting,
	"audio":      runAudio,
	"join-storm": runJoinStorm,
	"idle-ws":    runIdleWS,
	"chat":       runChat,
	"token":      nil, // sign in, print a Bearer token on stdout, exit
}

// multiRoom are the scenarios -rooms applies to.
var multiRoom = map[string]bool{"fanout": true, "join-storm": true, "meeting": true, "audio": true}

// splitList splits a comma-separated list, trimming spaces; empty items
// are dropped.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("parley-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "url", "", "Parley's public `URL` (https://127.0.0.1:PORT); for a cluster, each node's URL, comma-separated: "+
		"sign-in and rooms go to the first, client i's socket to URL i mod their number; every request sends the first as its Origin "+
		"(the cluster's public URL, as a browser behind a load balancer: give it to the nodes as --public-url or --ws-allowed-origins)")
	fs.BoolVar(&c.Insecure, "insecure", false, "accept any TLS certificate (self-signed test servers only)")
	fs.StringVar(&c.Username, "username", "", "account to sign in with")
	fs.StringVar(&c.Password, "password", "", "its password (or PARLEY_LOAD_PASSWORD)")
	fs.StringVar(&c.TOTPSecret, "totp-secret", "", "its TOTP secret (base32; or PARLEY_LOAD_TOTP_SECRET)")
	fs.StringVar(&c.TOTPSecretFile, "totp-secret-file", "", "on an account's first sign-in, enrol TOTP and write its new secret to this file (0600)")
	fs.StringVar(&c.Token, "token", "", "a Bearer token instead of signing in (or PARLEY_LOAD_TOKEN); idle-ws takes several, of different accounts, comma-separated, and spreads its rooms over them (each account's sockets count against --ws-max-per-user)")
	fs.StringVar(&c.Scenario, "scenario", "fanout", "fanout, meeting, audio, join-storm, idle-ws, chat, or token (print a Bearer token)")
	fs.IntVar(&c.N, "n", 10, "subscribers, listeners, sockets or participants")
	fs.IntVar(&c.K, "k", 4, "participants of the meeting scenario (all publish)")
	fs.Float64Var(&c.Rate, "rate", 20, "joins per second (fanout, meeting and audio cap it at 20)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "length of the measured steady window")
	fs.DurationVar(&c.Warmup, "warmup", 3*time.Second, "wait after everyone joined, not measured")
	fs.StringVar(&c.Room, "room", "", "room id to use (default: create one)")
	fs.IntVar(&c.RoomSize, "room-size", 25, "idle-ws: sockets per room, a meeting's size (rooms are created as needed; 0: all in one room)")
	fs.IntVar(&c.Rooms, "rooms", 1, "fanout, join-storm, meeting, audio: run this many independent rooms at once, each with the scenario's "+
		"-n (or -k) participants; with several -url their meetings land on the nodes the servers choose")
	fs.StringVar(&c.ServerPID, "server-pid", "", "the server's `pid`: report its CPU and RSS from /proc; for a cluster, one per -url, comma-separated, same order")
	fs.StringVar(&c.JSON, "json", "", "write the report as JSON to this `file`")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.Password == "" {
		c.Password = os.Getenv("PARLEY_LOAD_PASSWORD")
	}
	if c.TOTPSecret == "" {
		c.TOTPSecret = os.Getenv("PARLEY_LOAD_TOTP_SECRET")
	}
	if c.Token == "" {
		c.Token = os.Getenv("PARLEY_LOAD_TOKEN")
	}
	if _, ok := scenarios[c.Scenario]; !ok {
		return c, fmt.Errorf("unknown scenario %q", c.Scenario)
	}
	urls := splitList(c.URL)
	if len(urls) == 0 {
		return c, errors.New("-url is required")
	}
	if len(urls) != strings.Count(c.URL, ",")+1 {
		return c, errors.New("-url: an empty URL in the list")
	}
	if pids := splitList(c.ServerPID); c.ServerPID != "" && len(pids) != len(urls) {
		return c, fmt.Errorf("-server-pid: %d pid(s) for %d -url(s); give one per node, in the same order", len(pids), len(urls))
	}
	if c.Token == "" && (c.Username == "" || c.Password == "") {
		return c, errors.New("give -token, or -username and -password")
	}
	if c.N < 1 || c.K < 1 || c.Rate <= 0 || c.Duration <= 0 || c.Warmup < 0 {
		return c, errors.New("-n, -k, -rate and -duration must be positive")
	}
	if c.RoomSize < 0 {
		return c, errors.New("-room-size must be 0 (one room) or positive")
	}
	if c.Rooms < 1 {
		return c, errors.New("-rooms must be at least 1")
	}
	if c.Rooms > 1 && !multiRoom[c.Scenario] {
		return c, fmt.Errorf("-rooms: scenario %s runs in one room (idle-ws spreads its sockets with -room-size)", c.Scenario)
	}
	if c.Rooms > 1 && c.Room != "" {
		return c, errors.New("-rooms and -room: several rooms are created, not given")
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley-load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.Scenario == "token" {
		a := newAPI(splitList(cfg.URL)[0], cfg.Insecure)
		tok, err := a.signIn(ctx, cfg.Username, cfg.Password, cfg.TOTPSecret, cfg.TOTPSecretFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "parley-load:", err)
			os.Exit(1)
		}
		fmt.Println(tok)
		return
	}
	rep, err := Run(ctx, cfg, os.Stderr)
	if rep != nil {
		rep.printSummary(os.Stdout)
		if cfg.JSON != "" {
			if werr := rep.writeJSON(cfg.JSON); werr != nil {
				fmt.Fprintln(os.Stderr, "parley-load:", werr)
				os.Exit(1)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley-load:", err)
		os.Exit(1)
	}
}
