//go:build !parley_e2etap

package main

import (
	"log/slog"

	"github.com/parley-meet/parley/config"
	"github.com/parley-meet/parley/sfu"
)

// startTestTap does nothing in the binary that ships: the media tap of the
// end-to-end encryption browser test exists only in a test build
// (e2etap.go, `-tags parley_e2etap`).
func startTestTap(*config.Config, *sfu.SFU, *slog.Logger) (stop func()) { return func() {} }
