package signaling

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Chat texts: 1 to maxChatChars characters after cleaning.
const maxChatChars = 2000

// cleanChat turns what a client typed into the text everyone is shown:
// NFC-normalised, line breaks kept as "\n" (CR LF, CR, U+2028 and U+2029
// become "\n"; tabs become spaces), every other control character and
// every bidirectional-override character removed (they could hide or
// reorder what is shown), surrounding white space trimmed. It reports
// false for a text that is empty afterwards or longer than 2000
// characters. The result is text: clients render it with textContent.
func cleanChat(s string) (string, bool) {
	if !utf8.ValidString(s) || len(s) > maxChatInputBytes {
		return "", false
	}
	s = norm.NFC.String(s)
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == '\r':
			if i < len(s) && s[i] == '\n' {
				i++
			}
			b.WriteByte('\n')
		case r == '\n' || r == '\u2028' || r == '\u2029':
			b.WriteByte('\n')
		case r == '\t':
			b.WriteByte(' ')
		case unicode.IsControl(r), unicode.Is(unicode.Bidi_Control, r):
			// dropped
		default:
			b.WriteRune(r)
		}
	}
	out := strings.TrimSpace(b.String())
	if n := utf8.RuneCountInString(out); n < 1 || n > maxChatChars {
		return "", false
	}
	return out, true
}
