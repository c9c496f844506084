package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/parley-meet/parley/config"
)

// cmdHealthcheck asks the server configured for this environment (the
// same flags, PARLEY_* variables and file as serve) whether it is ready,
// over loopback. It is the container health check: the image has no curl.
// The certificate is not verified: the probe sends nothing secret and only
// reads the status, and a self-signed certificate is the default.
func cmdHealthcheck(ctx context.Context, args []string, e env) int {
	cfg, err := config.Load("healthcheck", args, e.getenv, e.stderr)
	if err != nil {
		return configExit(err, e)
	}
	host, port, _ := net.SplitHostPort(cfg.Listen)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "https"
	if cfg.InsecureHTTP {
		scheme = "http"
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + "/readyz"
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // loopback readiness probe
			Proxy:           nil,
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(e.stderr, "parley: healthcheck: %v\n", err)
		return 1
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(e.stderr, "parley: healthcheck %s: %v\n", url, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(e.stderr, "parley: healthcheck %s: status %d\n", url, resp.StatusCode)
		return 1
	}
	fmt.Fprintln(e.stdout, "ready")
	return 0
}
