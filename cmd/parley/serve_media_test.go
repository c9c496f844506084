package main

import (
	"testing"

	"github.com/parley-meet/parley/config"
)

func TestSharesHTTPSPort(t *testing.T) {
	for _, tc := range []struct {
		listen, mediaIP string
		port            int
		want            bool
	}{
		{"127.0.0.1:8443", "", 8443, true}, // media on the --listen host by default
		{"127.0.0.1:8443", "127.0.0.1", 8444, false},
		{"0.0.0.0:8443", "192.0.2.1", 8443, true},
		{"192.0.2.1:8443", "0.0.0.0", 8443, true},
		{"192.0.2.1:8443", "192.0.2.2", 8443, false},
		{"localhost:8443", "", 8443, true},
		{":443", "", 443, true},
		{"127.0.0.1:0", "", 8443, false},
	} {
		cfg := &config.Config{Listen: tc.listen, MediaListenIP: tc.mediaIP}
		if got := sharesHTTPSPort(cfg, tc.port); got != tc.want {
			t.Errorf("listen %s, media %q, port %d: %v, want %v", tc.listen, tc.mediaIP, tc.port, got, tc.want)
		}
	}
}
