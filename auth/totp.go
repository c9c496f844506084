package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"image/png"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters (RFC 6238): SHA-1, 6 digits, 30 s steps. A code is
// accepted for the current step and one step either side (±30 s of clock
// drift), and only for a step later than the last one accepted for the
// user, so that no code works twice.
const (
	totpPeriod     = 30
	totpSkew       = 1
	totpDigits     = otp.DigitsSix
	totpSecretSize = 20 // bytes: 160 bits
)

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1}

// Enrollment is what a user sees once while enrolling: the secret as
// base32, as an otpauth:// URI and as a QR code PNG (data: URL).
type Enrollment struct {
	Secret     string `json:"secret"`
	OTPAuthURI string `json:"otpauth_uri"`
	QRPNG      string `json:"qr_png"`
}

// newTOTPKey makes a fresh 160-bit secret for accountName.
func newTOTPKey(issuer, accountName string) (Enrollment, error) {
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: issuer, AccountName: accountName, Period: totpPeriod,
		SecretSize: totpSecretSize, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1, Rand: rand.Reader,
	})
	if err != nil {
		return Enrollment{}, err
	}
	img, err := key.Image(256, 256)
	if err != nil {
		return Enrollment{}, err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return Enrollment{}, err
	}
	return Enrollment{
		Secret:     key.Secret(),
		OTPAuthURI: key.URL(),
		QRPNG:      "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()),
	}, nil
}

// totpStep is the RFC 6238 time step of t.
func totpStep(t time.Time) int64 { return t.Unix() / totpPeriod }

// validCodeFormat is true for exactly six ASCII digits.
func validCodeFormat(code string) bool {
	if len(code) != 6 {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return false
		}
	}
	return true
}

// matchTOTP returns the step within the window around now whose code is
// code. replay is true when the code belongs to a step at or before
// lastStep: right code, but already used (or superseded).
func matchTOTP(secret, code string, now time.Time, lastStep int64) (step int64, ok, replay bool) {
	if !validCodeFormat(code) {
		return 0, false, false
	}
	cur := totpStep(now)
	for s := cur - totpSkew; s <= cur+totpSkew; s++ {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(s*totpPeriod, 0), totpOpts)
		if err != nil {
			return 0, false, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			if s <= lastStep {
				replay = true
				continue
			}
			return s, true, false
		}
	}
	return 0, false, replay
}

// recoveryAlphabet is Crockford-like base32 without I, L, O, U.
var recoveryEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// newRecoveryCode returns an 80-bit code formatted as four groups of four.
func newRecoveryCode() string {
	b := make([]byte, 10)
	rand.Read(b)
	s := recoveryEncoding.EncodeToString(b) // 16 characters
	return strings.ToLower(s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16])
}

// normalizeRecoveryCode accepts the code as typed: any case, with or
// without dashes and spaces, and the look-alikes O→0, I/L→1.
func normalizeRecoveryCode(s string) string {
	s = strings.ToUpper(s)
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '-' || r == ' ':
		case r == 'O':
			b.WriteByte('0')
		case r == 'I' || r == 'L':
			b.WriteByte('1')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
