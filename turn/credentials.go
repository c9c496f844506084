package turn

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what the TURN REST scheme specifies
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	pionturn "github.com/pion/turn/v5"
)

// MaxParticipantLen is the longest participant id a credential may carry.
const MaxParticipantLen = 128

// SecretFile is the name of the shared-secret file in the data directory.
const SecretFile = "turn-secret"

var (
	// ErrMalformedUsername is returned for a username that is not
	// "<expiry-unix>:<participant-id>" with a valid participant id.
	ErrMalformedUsername = errors.New("turn: malformed credential username")
	// ErrExpiredCredential is returned for a credential whose expiry is not
	// after the current time.
	ErrExpiredCredential = errors.New("turn: credential expired")
	// ErrBadPassword is returned by Verify when the password does not match.
	ErrBadPassword = errors.New("turn: credential password mismatch")
	// ErrInvalidParticipant is returned by ValidateParticipant.
	ErrInvalidParticipant = errors.New("turn: invalid participant id")
)

// Credential is a time-limited TURN credential in the TURN REST API scheme
// (draft-uberti-behave-turn-rest): Username is "<expiry-unix>:<participant>"
// and Password is base64(HMAC-SHA1(secret, Username)). It is a secret:
// hand it to the participant it names, never log it.
type Credential struct {
	Username string
	Password string //nolint:gosec // a credential by design
	Expires  time.Time
}

// ValidateParticipant checks that id can be carried in a credential: 1 to
// MaxParticipantLen bytes of UTF-8 with no ':' and no control characters
// (ids appear in audit logs).
func ValidateParticipant(id string) error {
	if id == "" || len(id) > MaxParticipantLen || !utf8.ValidString(id) {
		return ErrInvalidParticipant
	}
	for _, r := range id {
		if r == ':' || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ErrInvalidParticipant
		}
	}
	return nil
}

// Mint returns a credential for participant valid from now for ttl (the
// expiry is rounded down to a whole second). A participant id that
// ValidateParticipant refuses, or an empty secret, gives the zero
// Credential, which no server accepts.
func Mint(secret []byte, participant string, ttl time.Duration, now time.Time) Credential {
	if len(secret) == 0 || ValidateParticipant(participant) != nil {
		return Credential{}
	}
	exp := now.Add(ttl).Unix()
	username := strconv.FormatInt(exp, 10) + ":" + participant
	return Credential{
		Username: username,
		Password: password(secret, username),
		Expires:  time.Unix(exp, 0),
	}
}

// password is base64(HMAC-SHA1(secret, username)), standard encoding.
func password(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username)) //nolint:errcheck // hash writes never fail
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ParseUsername splits a credential username into its expiry and
// participant id. The expiry must be a canonical non-negative decimal
// number of Unix seconds.
func ParseUsername(username string) (expires time.Time, participant string, err error) {
	expStr, participant, ok := strings.Cut(username, ":")
	if !ok || expStr == "" || len(expStr) > 19 {
		return time.Time{}, "", ErrMalformedUsername
	}
	exp, perr := strconv.ParseInt(expStr, 10, 64)
	if perr != nil || exp < 0 || strconv.FormatInt(exp, 10) != expStr {
		return time.Time{}, "", ErrMalformedUsername
	}
	if ValidateParticipant(participant) != nil {
		return time.Time{}, "", ErrMalformedUsername
	}
	return time.Unix(exp, 0), participant, nil
}

// checkUsername parses username and refuses it when expired at now.
func checkUsername(username string, now time.Time) (participant string, err error) {
	expires, participant, err := ParseUsername(username)
	if err != nil {
		return "", err
	}
	if !now.Before(expires) {
		return "", ErrExpiredCredential
	}
	return participant, nil
}

// LongTermKey is what the server's authentication handler does with a
// request's USERNAME: it refuses a malformed or expired username and
// otherwise returns the participant id and the STUN long-term key
// MD5(username ":" realm ":" password) for the password this secret gives
// that username. Pion then checks the request's MESSAGE-INTEGRITY with the
// key, so a client holding a wrong password gets 401 Unauthorized.
func LongTermKey(secret []byte, username, realm string, now time.Time) (participant string, key []byte, err error) {
	participant, err = checkUsername(username, now)
	if err != nil {
		return "", nil, err
	}
	return participant, pionturn.GenerateAuthKey(username, realm, password(secret, username)), nil
}

// Verify checks a username/password pair directly (for callers that see
// the password itself, unlike a TURN server): malformed, expired, then a
// constant-time password comparison. It returns the participant id.
func Verify(secret []byte, username, pass string, now time.Time) (participant string, err error) {
	participant, err = checkUsername(username, now)
	if err != nil {
		return "", err
	}
	want := password(secret, username)
	if subtle.ConstantTimeCompare([]byte(want), []byte(pass)) != 1 {
		return "", ErrBadPassword
	}
	return participant, nil
}

// secretHexLen is the length of the secret file's content: 32 random bytes
// in lowercase hex.
const secretHexLen = 64

// LoadOrCreateSecret returns the TURN shared secret kept in
// <dataDir>/turn-secret, creating it on first use from 32 bytes of
// crypto/rand. The file holds the bytes in hex (64 characters, optionally
// followed by a newline) and the returned secret is that hex text, so the
// same file works verbatim as another TURN server's static-auth-secret.
//
// The file is created with mode 0600 and never replaced. An existing file
// that is not a regular file, is readable or writable by group or others
// (on Unix), or does not hold 64 hex characters is an error: the secret
// mints every TURN credential and must not be guessed, shared or silently
// regenerated.
func LoadOrCreateSecret(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, SecretFile)
	secret, err := readSecret(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}

	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("turn: generating secret: %w", err)
	}
	text := []byte(hex.EncodeToString(raw[:]) + "\n")

	// Write a temporary file and link it into place: the secret appears
	// whole or not at all, and a concurrent start keeps the first one.
	tmp, err := os.CreateTemp(dataDir, ".turn-secret-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("turn: creating secret: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) //nolint:errcheck // best effort; the link holds the data
	_, werr := tmp.Write(text)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return nil, fmt.Errorf("turn: writing secret: %w", err)
	}
	if err := os.Link(tmpName, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("turn: installing secret: %w", err)
	}
	return readSecret(path)
}

// readSecret reads and checks an existing secret file.
func readSecret(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("turn: secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("turn: secret file %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("turn: secret file %s has mode %v; it must be private to its owner (chmod 600)",
			path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("turn: secret file: %w", err)
	}
	text := strings.TrimSuffix(string(b), "\n")
	if len(text) != secretHexLen {
		return nil, fmt.Errorf("turn: secret file %s does not hold %d hex characters", path, secretHexLen)
	}
	if _, err := hex.DecodeString(text); err != nil {
		return nil, fmt.Errorf("turn: secret file %s does not hold %d hex characters", path, secretHexLen)
	}
	return []byte(text), nil
}
