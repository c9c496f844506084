package auth

import (
	"context"
	"math"
	"time"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/store"
)

// Sign-in throttling, per account name (known or not, so that throttling
// never tells whether an account exists):
//   - after throttleFree failures each attempt must wait 2^(n-throttleFree)
//     seconds after the last failure, at most throttleMaxDelay;
//   - after lockFailures failures the name is locked for lockDuration, or
//     until an operator unlocks it.
//
// Wrong TOTP codes count as failures too. A complete sign-in clears the
// record. Per client address there is a token bucket (Config.LoginBurst,
// Config.LoginPerMinute). All of it lives in the store.
const (
	throttleFree     = 5
	throttleMaxDelay = 15 * time.Minute
	lockFailures     = 20
	lockDuration     = 15 * time.Minute
)

// takeAddressToken spends one sign-in attempt of the client's address.
func (s *Service) takeAddressToken(ctx context.Context, m Meta) error {
	waitUS, err := s.store.TakeToken(ctx, "login-ip:"+m.ClientIP, s.cfg.LoginPerMinute/60, float64(s.cfg.LoginBurst), s.nowUS())
	if err != nil {
		return err
	}
	if waitUS > 0 {
		s.record(ctx, m, "anonymous", "auth.throttled", "ip:"+m.ClientIP, audit.Denied, map[string]any{"scope": "address"})
		return &ThrottledError{RetryAfter: roundUp(time.Duration(waitUS) * time.Microsecond)}
	}
	return nil
}

// failureDelay is how long after the n-th failure the next try must wait.
func failureDelay(n int) time.Duration {
	if n < throttleFree {
		return 0
	}
	secs := math.Pow(2, float64(n-throttleFree))
	if secs >= throttleMaxDelay.Seconds() {
		return throttleMaxDelay
	}
	return time.Duration(secs * float64(time.Second))
}

// checkThrottle refuses an attempt on key while it is slowed or locked.
func (s *Service) checkThrottle(ctx context.Context, key string, m Meta) error {
	t, err := s.store.ThrottleByKey(ctx, key)
	if err != nil {
		return err
	}
	now := s.now()
	if until := time.UnixMicro(t.LockedUntilUS); t.LockedUntilUS > 0 && now.Before(until) {
		s.record(ctx, m, "anonymous", "auth.throttled", key, audit.Denied, map[string]any{"scope": "account", "locked": true})
		return &ThrottledError{RetryAfter: roundUp(until.Sub(now)), Locked: true}
	}
	if next := time.UnixMicro(t.LastFailureUS).Add(failureDelay(t.Failures)); t.Failures >= throttleFree && now.Before(next) {
		s.record(ctx, m, "anonymous", "auth.throttled", key, audit.Denied, map[string]any{"scope": "account", "failures": t.Failures})
		return &ThrottledError{RetryAfter: roundUp(next.Sub(now))}
	}
	return nil
}

// failure counts one failed attempt on key and records it in the audit log.
func (s *Service) failure(ctx context.Context, key string, m Meta, actor, action, target string, details map[string]any) {
	s.record(ctx, m, actor, action, target, audit.Failure, details)
	now := s.now()
	lockUntil := now.Add(lockDuration).UnixMicro()
	t, err := s.store.RecordFailure(ctx, key, now.UnixMicro(), lockFailures, lockUntil)
	if err != nil {
		s.log.Error("record sign-in failure", "err", err)
		return
	}
	if t.LockedUntilUS == lockUntil {
		s.record(ctx, m, "system", "auth.locked", key, audit.Success, map[string]any{"failures": t.Failures, "minutes": int(lockDuration.Minutes())})
	}
}

// throttleState reads a throttle record at the service's time: the
// failures counted, whether the name is locked, and whether an attempt
// would be refused now (locked or within the delay).
func (s *Service) throttleState(t store.Throttle) (failures int, locked, throttled bool) {
	now := s.now()
	if t.LockedUntilUS > 0 {
		if !now.Before(time.UnixMicro(t.LockedUntilUS)) {
			return 0, false, false // an ended lock starts a fresh count
		}
		return t.Failures, true, true
	}
	next := time.UnixMicro(t.LastFailureUS).Add(failureDelay(t.Failures))
	return t.Failures, false, t.Failures >= throttleFree && now.Before(next)
}

func (s *Service) clearThrottle(ctx context.Context, key string) {
	if _, err := s.store.DeleteThrottle(ctx, key); err != nil {
		s.log.Error("clear sign-in throttle", "err", err)
	}
}

// roundUp rounds a wait up to whole seconds, at least one, for Retry-After.
func roundUp(d time.Duration) time.Duration {
	if r := d.Truncate(time.Second); r < d {
		d = r + time.Second
	}
	if d < time.Second {
		d = time.Second
	}
	return d
}
