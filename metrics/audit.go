package metrics

import (
	"encoding/json"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-meet/parley/audit"
)

// auditClasses are the prefixes of the audit actions Parley records
// ("auth.login" is of class auth); any other is counted as "other", so
// that the label has a fixed set of values whatever is recorded.
var auditClasses = []string{"admin", "auth", "guest", "recording", "room", "server", "setup", "signal", "turn", "user"}

var auditOutcomes = []string{audit.Success, audit.Failure, audit.Denied}

// Sign-in steps that fail (parley_signin_failures_total's step label).
const (
	stepPassword     = "password"      // auth.login failure: unknown user or wrong password
	stepDisabled     = "disabled"      // auth.login denied: the right password of a disabled account
	stepTOTP         = "totp"          // auth.mfa failure: wrong or replayed code
	stepRecoveryCode = "recovery_code" // auth.recovery_code failure
)

// auditMetrics count the audit log's entries as they are recorded, and
// the sign-in events among them.
type auditMetrics struct {
	entries        *prometheus.CounterVec
	signins        prometheus.Counter
	signinFailures *prometheus.CounterVec
	throttled      *prometheus.CounterVec
	lockouts       prometheus.Counter
}

func newAuditMetrics() *auditMetrics {
	m := &auditMetrics{
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "audit_entries_total",
			Help: "Audit log entries recorded, by class of action (the part before the dot: auth, room, signal, turn...) and outcome.",
		}, []string{"class", "outcome"}),
		signins: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "signins_total",
			Help: "Sign-ins that opened a session (password and second factor accepted).",
		}),
		signinFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "signin_failures_total",
			Help: "Failed sign-in steps: password (unknown user or wrong password), disabled (account disabled), totp, recovery_code.",
		}, []string{"step"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "signin_throttled_total",
			Help: "Sign-in attempts refused by throttling, per client address or per account (a locked account included).",
		}, []string{"scope"}),
		lockouts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "signin_lockouts_total",
			Help: "Accounts locked after repeated sign-in failures.",
		}),
	}
	// Every series exists from the start, at 0.
	for _, c := range append(append([]string(nil), auditClasses...), "other") {
		for _, o := range auditOutcomes {
			m.entries.WithLabelValues(c, o)
		}
	}
	for _, s := range []string{stepPassword, stepDisabled, stepTOTP, stepRecoveryCode} {
		m.signinFailures.WithLabelValues(s)
	}
	for _, s := range []string{"address", "account"} {
		m.throttled.WithLabelValues(s)
	}
	return m
}

func (m *auditMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.entries, m.signins, m.signinFailures, m.throttled, m.lockouts)
}

func (m *auditMetrics) observe(e audit.Entry) {
	outcome := e.Outcome
	switch outcome {
	case audit.Success, audit.Failure, audit.Denied:
	default:
		outcome = "other"
	}
	m.entries.WithLabelValues(actionClass(e.Action), outcome).Inc()
	switch e.Action + "/" + e.Outcome {
	case "auth.login/" + audit.Success:
		m.signins.Inc()
	case "auth.login/" + audit.Failure:
		m.signinFailures.WithLabelValues(stepPassword).Inc()
	case "auth.login/" + audit.Denied:
		m.signinFailures.WithLabelValues(stepDisabled).Inc()
	case "auth.mfa/" + audit.Failure:
		m.signinFailures.WithLabelValues(stepTOTP).Inc()
	case "auth.recovery_code/" + audit.Failure:
		m.signinFailures.WithLabelValues(stepRecoveryCode).Inc()
	case "auth.locked/" + audit.Success:
		m.lockouts.Inc()
	}
	if e.Action == "auth.throttled" {
		m.throttled.WithLabelValues(throttleScope(e.Details)).Inc()
	}
}

// actionClass is the part of an action before its first dot, if it is a
// known class, else "other".
func actionClass(action string) string {
	class, _, _ := strings.Cut(action, ".")
	for _, c := range auditClasses {
		if c == class {
			return c
		}
	}
	return "other"
}

// throttleScope is the scope detail of an auth.throttled entry: "address"
// or "account" ("other" if it is neither).
func throttleScope(details json.RawMessage) string {
	var d struct {
		Scope string `json:"scope"`
	}
	if json.Unmarshal(details, &d) == nil && (d.Scope == "address" || d.Scope == "account") {
		return d.Scope
	}
	return "other"
}
