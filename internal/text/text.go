// Package text checks short texts people choose (display names, room
// names): valid UTF-8, NFC, trimmed, a bounded number of characters, and no
// control, line-separator or bidirectional-override characters. Such texts
// are stored and shown as text, never interpreted; this package only
// decides whether they are acceptable.
package text

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// ErrInvalid is returned for a text that is not acceptable.
var ErrInvalid = errors.New("invalid text")

// Clean returns s normalised (NFC, trimmed) if it has from min to max
// characters and none that could hide or reorder what is shown.
func Clean(s string, min, max int) (string, error) {
	if len(s) > 16*max+64 || !utf8.ValidString(s) {
		return "", ErrInvalid
	}
	s = strings.TrimSpace(norm.NFC.String(s))
	n := utf8.RuneCountInString(s)
	if n < min || n > max {
		return "", ErrInvalid
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r) {
			return "", ErrInvalid
		}
	}
	return s, nil
}
