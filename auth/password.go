package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed" // the common-password list
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"
)

// Password lengths, in Unicode code points after NFKC normalisation
// (NIST SP 800-63B).
const (
	// DefaultPasswordMinLength is the minimum of a zero PasswordPolicy.
	DefaultPasswordMinLength = 12
	// PasswordMinLengthFloor is the lowest minimum any policy enforces.
	PasswordMinLengthFloor = 8
	// PasswordMaxLength is the longest password accepted; longer ones are
	// refused, never truncated.
	PasswordMaxLength = 128
)

// maxPasswordBytes bounds the input Hash and Verify work on, so that a
// client cannot make the server normalise megabytes. No password the policy
// accepts comes near it: 128 code points stay under 2 KiB before NFKC.
const maxPasswordBytes = 4096

// Errors of PasswordPolicy.Check. Each error Check returns matches one of
// them with errors.Is, and its message is a sentence fit to show the user.
var (
	ErrPasswordTooShort   = errors.New("the password is too short")
	ErrPasswordTooLong    = errors.New("the password must have at most 128 characters") // PasswordMaxLength
	ErrPasswordCommon     = errors.New("this password is too common: choose one that is harder to guess")
	ErrPasswordIsUsername = errors.New("the password must not be the same as the username")
	ErrPasswordInvalid    = errors.New("the password contains characters that are not allowed")
)

// ErrPasswordPolicy is returned by NewPasswordPolicy for a minimum length
// out of range.
var ErrPasswordPolicy = errors.New("invalid password policy")

// policyError is a refusal whose message carries the policy's numbers; it
// matches its sentinel with errors.Is.
type policyError struct {
	sentinel error
	msg      string
}

func (e *policyError) Error() string { return e.msg }
func (e *policyError) Unwrap() error { return e.sentinel }

// PasswordPolicy decides which passwords may be set. There are no
// composition rules: any Unicode is allowed, within the length limits, if it
// is not a common password nor the username. The zero value is the default
// policy (12 characters at least).
type PasswordPolicy struct {
	// MinLength is the minimum number of characters. Zero means
	// DefaultPasswordMinLength; values below PasswordMinLengthFloor are
	// raised to it and values above PasswordMaxLength lowered to it.
	MinLength int
}

// NewPasswordPolicy returns a policy with the given minimum length, or an
// error wrapping ErrPasswordPolicy if it is below PasswordMinLengthFloor or
// above PasswordMaxLength. Use it to validate configuration.
func NewPasswordPolicy(minLength int) (PasswordPolicy, error) {
	if minLength < PasswordMinLengthFloor || minLength > PasswordMaxLength {
		return PasswordPolicy{}, fmt.Errorf("%w: the minimum password length must be between %d and %d, not %d",
			ErrPasswordPolicy, PasswordMinLengthFloor, PasswordMaxLength, minLength)
	}
	return PasswordPolicy{MinLength: minLength}, nil
}

// Min returns the minimum length Check enforces, after applying the default
// and the limits to MinLength.
func (p PasswordPolicy) Min() int {
	switch {
	case p.MinLength == 0:
		return DefaultPasswordMinLength
	case p.MinLength < PasswordMinLengthFloor:
		return PasswordMinLengthFloor
	case p.MinLength > PasswordMaxLength:
		return PasswordMaxLength
	}
	return p.MinLength
}

// Check reports whether password may be set for the account username. It
// returns nil, or an error matching one of ErrPasswordInvalid (not UTF-8, or
// a control character), ErrPasswordTooShort, ErrPasswordTooLong,
// ErrPasswordIsUsername or ErrPasswordCommon. Lengths are counted in code
// points after NFKC normalisation; comparisons ignore case.
func (p PasswordPolicy) Check(password, username string) error {
	if !utf8.ValidString(password) || strings.ContainsFunc(password, unicode.IsControl) {
		return ErrPasswordInvalid
	}
	if len(password) > maxPasswordBytes { // cannot come under the limit: spare NFKC the work
		return ErrPasswordTooLong
	}
	normalized := norm.NFKC.String(password)
	n := utf8.RuneCountInString(normalized)
	if minLen := p.Min(); n < minLen {
		return &policyError{ErrPasswordTooShort,
			fmt.Sprintf("the password must have at least %d characters", minLen)}
	}
	if n > PasswordMaxLength {
		return ErrPasswordTooLong
	}
	folded := strings.ToLower(normalized)
	if username != "" && folded == strings.ToLower(norm.NFKC.String(username)) {
		return ErrPasswordIsUsername
	}
	if isCommonPassword(folded) {
		return ErrPasswordCommon
	}
	return nil
}

//go:embed commonpasswords.txt
var commonPasswordsFile string

// commonPasswords is the set of the embedded list, keyed by the lowercased
// NFKC form, built on first use.
var commonPasswords = sync.OnceValue(func() map[string]struct{} {
	set := make(map[string]struct{}, 50000)
	for line := range strings.Lines(commonPasswordsFile) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		set[strings.ToLower(norm.NFKC.String(line))] = struct{}{}
	}
	return set
})

// isCommonPassword reports whether folded, a lowercased NFKC string, is in
// the common-password list.
func isCommonPassword(folded string) bool {
	_, ok := commonPasswords()[folded]
	return ok
}

// The current Argon2id parameters (OWASP's minimum: m=19 MiB, t=2, p=1).
// Hashes made with others still verify; NeedsRehash reports them.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Bounds on the parameters Verify accepts from an encoded hash, so that a
// corrupt or hostile row cannot make it allocate or loop without limit.
const (
	maxArgonMemory  = 256 * 1024 // KiB
	maxArgonTime    = 10
	maxArgonThreads = 8
	minArgonKeyLen  = 16
	maxArgonKeyLen  = 64
	minArgonSaltLen = 8
	maxArgonSaltLen = 64
	maxEncodedLen   = 512
)

// ErrInvalidHash is returned by Verify for an encoded hash it cannot parse
// or whose parameters are out of bounds.
var ErrInvalidHash = errors.New("invalid password hash")

// ErrBusy is returned, with the context's error, when the context ends while
// waiting for a free hashing slot.
var ErrBusy = errors.New("password hashing is busy")

// b64 is the PHC string encoding of salt and key: standard alphabet, no
// padding, canonical trailing bits.
var b64 = base64.RawStdEncoding.Strict()

// argonParams are the parameters of one encoded hash.
type argonParams struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// encode returns the PHC string of a.
func (a argonParams) encode() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		a.memory, a.time, a.threads, b64.EncodeToString(a.salt), b64.EncodeToString(a.key))
}

// current reports whether a was made with the current parameters.
func (a argonParams) current() bool {
	return a.memory == argonMemory && a.time == argonTime && a.threads == argonThreads &&
		len(a.salt) == argonSaltLen && len(a.key) == argonKeyLen
}

// parseHash parses a PHC string "$argon2id$v=19$m=M,t=T,p=P$salt$key" and
// checks its parameters against the bounds.
func parseHash(encoded string) (argonParams, error) {
	var a argonParams
	if len(encoded) > maxEncodedLen {
		return a, fmt.Errorf("%w: longer than %d bytes", ErrInvalidHash, maxEncodedLen)
	}
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return a, fmt.Errorf("%w: not an argon2id PHC string", ErrInvalidHash)
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return a, fmt.Errorf("%w: unsupported version %q", ErrInvalidHash, parts[2])
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return a, fmt.Errorf("%w: parameters %q", ErrInvalidHash, parts[3])
	}
	var vals [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(params[i], name)
		if !ok {
			return a, fmt.Errorf("%w: parameters %q", ErrInvalidHash, parts[3])
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return a, fmt.Errorf("%w: parameter %q: %w", ErrInvalidHash, params[i], err)
		}
		vals[i] = n
	}
	m, t, p := vals[0], vals[1], vals[2]
	switch {
	case p < 1 || p > maxArgonThreads:
		return a, fmt.Errorf("%w: parallelism %d out of 1..%d", ErrInvalidHash, p, maxArgonThreads)
	case t < 1 || t > maxArgonTime:
		return a, fmt.Errorf("%w: time %d out of 1..%d", ErrInvalidHash, t, maxArgonTime)
	case m < 8*p || m > maxArgonMemory:
		return a, fmt.Errorf("%w: memory %d KiB out of %d..%d", ErrInvalidHash, m, 8*p, maxArgonMemory)
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return a, fmt.Errorf("%w: salt: %w", ErrInvalidHash, err)
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil {
		return a, fmt.Errorf("%w: key: %w", ErrInvalidHash, err)
	}
	if len(salt) < minArgonSaltLen || len(salt) > maxArgonSaltLen {
		return a, fmt.Errorf("%w: salt of %d bytes", ErrInvalidHash, len(salt))
	}
	if len(key) < minArgonKeyLen || len(key) > maxArgonKeyLen {
		return a, fmt.Errorf("%w: key of %d bytes", ErrInvalidHash, len(key))
	}
	return argonParams{memory: uint32(m), time: uint32(t), threads: uint8(p), salt: salt, key: key}, nil
}

// NeedsRehash reports whether encoded was made with parameters other than
// the current ones (or cannot be parsed): after a successful Verify, the
// caller should store a fresh Hash of the password.
func NeedsRehash(encoded string) bool {
	a, err := parseHash(encoded)
	return err != nil || !a.current()
}

// Hasher computes and verifies Argon2id password hashes, a bounded number at
// a time: each costs 19 MiB of memory, and a flood of logins must queue, not
// exhaust the machine. A Hasher is safe for concurrent use.
type Hasher struct {
	slots chan struct{}

	dummyOnce sync.Once
	dummy     string

	// onSlot, if set, is called on taking a slot, and the function it
	// returns on giving it back (tests count the hashes in flight).
	onSlot func() (leave func())
}

// NewHasher returns a Hasher that computes at most maxConcurrent hashes at
// once; below 1, it is the number of CPUs Go uses (GOMAXPROCS).
func NewHasher(maxConcurrent int) *Hasher {
	if maxConcurrent < 1 {
		maxConcurrent = runtime.GOMAXPROCS(0)
	}
	return &Hasher{slots: make(chan struct{}, maxConcurrent)}
}

// acquire waits for a hashing slot. If ctx ends first, it returns an error
// wrapping both ErrBusy and ctx's error.
func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	default:
	}
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
	}
}

// release frees the slot acquire took.
func (h *Hasher) release() { <-h.slots }

// derive computes the Argon2id key of password (NFKC-normalised) with a's
// parameters and key length, in a slot.
func (h *Hasher) derive(ctx context.Context, password string, a argonParams, keyLen uint32) ([]byte, error) {
	pw := []byte(norm.NFKC.String(password))
	defer clear(pw)
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	defer h.release()
	if h.onSlot != nil {
		defer h.onSlot()()
	}
	return argon2.IDKey(pw, a.salt, a.time, a.memory, a.threads, keyLen), nil
}

// Hash returns the PHC string of password's Argon2id hash with the current
// parameters and a fresh random salt:
// "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>". The password is
// NFKC-normalised first; it is not checked against a policy.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if len(password) > maxPasswordBytes {
		return "", fmt.Errorf("hash password: %w", ErrPasswordTooLong)
	}
	a := argonParams{memory: argonMemory, time: argonTime, threads: argonThreads,
		salt: make([]byte, argonSaltLen)}
	if _, err := rand.Read(a.salt); err != nil {
		return "", fmt.Errorf("hash password: salt: %w", err)
	}
	key, err := h.derive(ctx, password, a, argonKeyLen)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	a.key = key
	return a.encode(), nil
}

// Verify reports whether password matches encoded, a string from Hash made
// with any parameters within bounds. A wrong password is (false, nil); an
// encoded hash that cannot be parsed or has absurd parameters is an error
// wrapping ErrInvalidHash, and the end of ctx while waiting for a slot one
// wrapping ErrBusy. Check NeedsRehash after a match.
func (h *Hasher) Verify(ctx context.Context, encoded, password string) (bool, error) {
	a, err := parseHash(encoded)
	if err != nil {
		return false, fmt.Errorf("verify password: %w", err)
	}
	if len(password) > maxPasswordBytes {
		return false, nil // longer than any password that can have been set
	}
	key, err := h.derive(ctx, password, a, uint32(len(a.key)))
	if err != nil {
		return false, fmt.Errorf("verify password: %w", err)
	}
	return subtle.ConstantTimeCompare(key, a.key) == 1, nil
}

// Dummy costs what one Verify with the current parameters costs, against an
// internal hash no password matches. Call it when the username is unknown,
// so that the time of a failed login does not reveal whether the account
// exists.
func (h *Hasher) Dummy(ctx context.Context, password string) {
	h.dummyOnce.Do(func() {
		a := argonParams{memory: argonMemory, time: argonTime, threads: argonThreads,
			salt: make([]byte, argonSaltLen), key: make([]byte, argonKeyLen)}
		_, _ = rand.Read(a.salt) // never fails (crypto/rand); zeros would do as well
		_, _ = rand.Read(a.key)
		h.dummy = a.encode()
	})
	_, _ = h.Verify(ctx, h.dummy, password)
}
