package main

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// policyRefresh is how often the policy in memory is compared with the
// store's.
const policyRefresh = 5 * time.Second

// refreshPolicy reloads the rbac policy when another process changed it,
// every interval until ctx ends; wg.Done when it returns.
func refreshPolicy(ctx context.Context, authz interface {
	Refresh(context.Context) (bool, error)
}, log *slog.Logger, interval time.Duration, wg *sync.WaitGroup) {
	defer wg.Done()
	every(ctx, interval, func() {
		changed, err := authz.Refresh(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("refreshing the rbac policy", "err", err)
		} else if changed {
			log.Info("the rbac policy changed in the store; reloaded")
		}
	})
}

// every runs f every interval until ctx ends (the housekeeping loops of
// serve: their caller owns the goroutine and waits for it).
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
