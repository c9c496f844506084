package auth

import (
	"errors"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/parley-meet/parley/internal/text"
)

// Errors for names, with messages fit to show the user.
var (
	ErrInvalidUsername    = errors.New("a username has 3 to 64 characters from a-z, 0-9, '.', '_' and '-'")
	ErrInvalidDisplayName = errors.New("a display name has 1 to 64 characters and no control characters")
)

// NormalizeUsername returns the canonical form of a username (NFKC, lower
// case), or ErrInvalidUsername. Usernames are unique in this form, so they
// are unique case-insensitively.
func NormalizeUsername(s string) (string, error) {
	if len(s) > 256 || !utf8.ValidString(s) {
		return "", ErrInvalidUsername
	}
	s = strings.ToLower(norm.NFKC.String(strings.TrimSpace(s)))
	if len(s) < 3 || len(s) > 64 {
		return "", ErrInvalidUsername
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "", ErrInvalidUsername
		}
	}
	return s, nil
}

// NormalizeDisplayName trims and checks a display name. It is stored and
// shown as text, never interpreted.
func NormalizeDisplayName(s string) (string, error) {
	s, err := text.Clean(s, 1, 64)
	if err != nil {
		return "", ErrInvalidDisplayName
	}
	return s, nil
}
