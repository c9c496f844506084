package auth

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unicode/utf8"
)

// nRunes repeats s and cuts it to n code points.
func nRunes(s string, n int) string {
	r := []rune(strings.Repeat(s, n/utf8.RuneCountInString(s)+1))
	return string(r[:n])
}

// Reference vectors from the Argon2 reference implementation's command
// (Debian package argon2, 0~20171227), e.g.
// printf '%s' 'correct horse battery staple' | argon2 parleysaltsalt16 -id -t 2 -k 19456 -p 1 -l 32 -e
const (
	refPassword = "correct horse battery staple"
	refHash     = "$argon2id$v=19$m=19456,t=2,p=1$cGFybGV5c2FsdHNhbHQxNg$GUsTPwo/TzWSZDsPYE/9+1Vk7d+PWWYTmFoS5rqiM6c"
	// Older parameters (t=3, 8 MiB, p=2, 16-byte key); the password was
	// given with composed "é" and "î" (NFC, which NFKC keeps).
	refOldPassword = "café au lait, s’il vous plaît"
	refOldHash     = "$argon2id$v=19$m=8192,t=3,p=2$YW5vdGhlcnNhbHQ4$qNkNhGH+jykvxwGl1diqiQ"
)

func TestPasswordPolicyCheck(t *testing.T) {
	long128 := nRunes("correct horse battery staple ✓ ", 128)
	tests := []struct {
		name     string
		policy   PasswordPolicy
		password string
		username string
		want     error // nil: accepted
	}{
		{"empty", PasswordPolicy{}, "", "", ErrPasswordTooShort},
		{"11 characters by default", PasswordPolicy{}, "xq7-vbn3-pz", "", ErrPasswordTooShort},
		{"12 characters by default", PasswordPolicy{}, "xq7-vbn3-pzw", "", nil},
		{"7 characters with minimum 4 (clamped to 8)", PasswordPolicy{MinLength: 4}, "zq8#Lm2", "", ErrPasswordTooShort},
		{"5 characters with minimum 4 (clamped to 8)", PasswordPolicy{MinLength: 4}, "zq8#L", "", ErrPasswordTooShort},
		{"8 characters with minimum 4", PasswordPolicy{MinLength: 4}, "zq8#Lm2!", "", nil},
		{"8 characters with minimum 8", PasswordPolicy{MinLength: 8}, "zq8#Lm2!", "", nil},
		{"15 characters with minimum 16", PasswordPolicy{MinLength: 16}, "zq8#Lm2!zq8#Lm2", "", ErrPasswordTooShort},
		{"exactly 128", PasswordPolicy{}, long128, "", nil},
		{"129", PasswordPolicy{}, long128 + "x", "", ErrPasswordTooLong},
		{"127 with minimum 500 (clamped to 128)", PasswordPolicy{MinLength: 500}, long128[:127], "", ErrPasswordTooShort},
		{"128 with minimum 500 (clamped to 128)", PasswordPolicy{MinLength: 500}, long128, "", nil},
		{"128 emoji (512 bytes)", PasswordPolicy{}, strings.Repeat("🐎", 128), "", nil},
		{"129 emoji", PasswordPolicy{}, strings.Repeat("🐎", 129), "", ErrPasswordTooLong},
		{"5000 bytes", PasswordPolicy{}, strings.Repeat("ab", 2500), "", ErrPasswordTooLong},
		{"64+ characters", PasswordPolicy{}, nRunes("a sentence long enough to remember; ", 70), "", nil},
		{"Unicode", PasswordPolicy{}, "correct horse battery staple 🐎 ünïcödé", "", nil},
		{"Cyrillic", PasswordPolicy{}, "съешь же ещё этих булок", "", nil},
		// Lengths are counted after NFKC: decomposed "é" is 2 code points
		// typed, 1 counted; the ligature "ﬃ" is 1 typed, 3 counted.
		{"11 decomposed é (22 code points)", PasswordPolicy{}, strings.Repeat("e\u0301", 11), "", ErrPasswordTooShort},
		{"65 decomposed é (130 code points)", PasswordPolicy{}, strings.Repeat("e\u0301", 65), "", nil},
		{"4 ﬃ ligatures (12 after NFKC)", PasswordPolicy{}, "ﬃﬃﬃﬃ", "", nil},
		{"43 ﬃ ligatures (129 after NFKC)", PasswordPolicy{}, strings.Repeat("ﬃ", 43), "", ErrPasswordTooLong},
		{"common", PasswordPolicy{MinLength: 8}, "password", "", ErrPasswordCommon},
		{"common, other case", PasswordPolicy{MinLength: 8}, "PassWord", "", ErrPasswordCommon},
		{"common, full-width (NFKC)", PasswordPolicy{MinLength: 8}, "ｐａｓｓｗｏｒｄ", "", ErrPasswordCommon},
		{"common, 12 characters", PasswordPolicy{}, "1qaz2wsx3edc", "", ErrPasswordCommon},
		{"common, 12 digits", PasswordPolicy{}, "123456789012", "", ErrPasswordCommon},
		{"common, 12 letters", PasswordPolicy{}, "LeaveMeAlone", "", ErrPasswordCommon},
		{"username", PasswordPolicy{}, "alice.wonderland", "alice.wonderland", ErrPasswordIsUsername},
		{"username, other case", PasswordPolicy{}, "Alice.WONDERLAND", "alice.wonderland", ErrPasswordIsUsername},
		{"username given in capitals", PasswordPolicy{}, "alice.wonderland", "ALICE.Wonderland", ErrPasswordIsUsername},
		{"username inside is fine", PasswordPolicy{}, "alice.wonderland.2026", "alice.wonderland", nil},
		{"not UTF-8", PasswordPolicy{}, "abcdefghijk\xff\xfe", "", ErrPasswordInvalid},
		{"NUL", PasswordPolicy{}, "abcdefghijk\x00lmn", "", ErrPasswordInvalid},
		{"newline", PasswordPolicy{}, "abcdefghijk\nlmn", "", ErrPasswordInvalid},
		{"tab", PasswordPolicy{}, "abcdefghijk\tlmn", "", ErrPasswordInvalid},
		{"DEL", PasswordPolicy{}, "abcdefghijk\x7flmn", "", ErrPasswordInvalid},
		{"C1 control", PasswordPolicy{}, "abcdefghijk\u0085lmn", "", ErrPasswordInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.policy.Check(tc.password, tc.username)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Check = %v, want accepted", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestPasswordPolicyMessages(t *testing.T) {
	tests := []struct {
		policy   PasswordPolicy
		password string
		want     string
	}{
		{PasswordPolicy{}, "short", "the password must have at least 12 characters"},
		{PasswordPolicy{MinLength: 4}, "short", "the password must have at least 8 characters"},
		{PasswordPolicy{MinLength: 20}, "short", "the password must have at least 20 characters"},
		{PasswordPolicy{}, strings.Repeat("x", 129), "the password must have at most 128 characters"},
	}
	for _, tc := range tests {
		if err := tc.policy.Check(tc.password, ""); err == nil || err.Error() != tc.want {
			t.Errorf("MinLength %d: Check = %v, want %q", tc.policy.MinLength, err, tc.want)
		}
	}
}

func TestNewPasswordPolicy(t *testing.T) {
	for _, n := range []int{-1, 0, 4, 7, 129} {
		if _, err := NewPasswordPolicy(n); !errors.Is(err, ErrPasswordPolicy) {
			t.Errorf("NewPasswordPolicy(%d) = %v, want ErrPasswordPolicy", n, err)
		}
	}
	for _, n := range []int{8, 12, 128} {
		p, err := NewPasswordPolicy(n)
		if err != nil || p.Min() != n {
			t.Errorf("NewPasswordPolicy(%d) = %+v, %v", n, p, err)
		}
	}
	if got := (PasswordPolicy{}).Min(); got != DefaultPasswordMinLength {
		t.Errorf("zero policy minimum = %d, want %d", got, DefaultPasswordMinLength)
	}
}

func TestCommonPasswordList(t *testing.T) {
	set := commonPasswords()
	if len(set) < 10000 {
		t.Fatalf("%d common passwords, want at least 10000", len(set))
	}
	for pw := range set {
		if pw == "" || !utf8.ValidString(pw) || utf8.RuneCountInString(pw) > PasswordMaxLength ||
			strings.HasPrefix(pw, "#") || pw != strings.ToLower(pw) {
			t.Errorf("bad entry %q", pw)
		}
	}
	for _, pw := range []string{"password", "123456", "qwerty", "iloveyou", "trustno1", "michael",
		"123456789012", "1qaz2wsx3edc", "qwerty123456", "finalfantasy"} {
		if !isCommonPassword(pw) {
			t.Errorf("%q is not in the list", pw)
		}
	}
	// The attribution header is not an entry.
	if isCommonPassword("# license of the source (mit):") || isCommonPassword("#") {
		t.Error("a comment line was loaded as a password")
	}
}

var phcPattern = regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)

func TestHashVerify(t *testing.T) {
	ctx := context.Background()
	h := NewHasher(2)
	const pw = "correct horse battery staple 🐎 ünïcödé"
	enc, err := h.Hash(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	if !phcPattern.MatchString(enc) {
		t.Fatalf("Hash = %q, not the PHC format", enc)
	}
	a, err := parseHash(enc)
	if err != nil || a.encode() != enc || !a.current() {
		t.Fatalf("parse and encode again = %q, %v; want %q", a.encode(), err, enc)
	}
	if NeedsRehash(enc) {
		t.Error("NeedsRehash of a fresh hash")
	}
	if again, err := h.Hash(ctx, pw); err != nil || again == enc {
		t.Errorf("second Hash = %q, %v: want a different salt", again, err)
	}
	tests := []struct {
		name     string
		password string
		want     bool
	}{
		{"same", pw, true},
		{"decomposed (NFKC)", "correct horse battery staple 🐎 u\u0308ni\u0308co\u0308de\u0301", true},
		{"wrong", "correct horse battery staple 🐎 unicode", false},
	}
	for _, tc := range tests {
		ok, err := h.Verify(ctx, enc, tc.password)
		if err != nil || ok != tc.want {
			t.Errorf("%s: Verify = %v, %v; want %v", tc.name, ok, err, tc.want)
		}
	}
}

func TestVerifyReference(t *testing.T) {
	ctx := context.Background()
	h := NewHasher(1)
	tests := []struct {
		name      string
		encoded   string
		password  string
		want      bool
		oldParams bool
	}{
		{"current parameters", refHash, refPassword, true, false},
		{"wrong password", refHash, refPassword + ".", false, false},
		{"older parameters, typed decomposed", refOldHash, "cafe\u0301 au lait, s’il vous plai\u0302t", true, true},
	}
	for _, tc := range tests {
		ok, err := h.Verify(ctx, tc.encoded, tc.password)
		if err != nil || ok != tc.want {
			t.Errorf("%s: Verify = %v, %v; want %v", tc.name, ok, err, tc.want)
		}
		if NeedsRehash(tc.encoded) != tc.oldParams {
			t.Errorf("%s: NeedsRehash = %v", tc.name, !tc.oldParams)
		}
	}
}

// TestNoTruncation: the whole password is hashed, not a prefix of it.
func TestNoTruncation(t *testing.T) {
	ctx := context.Background()
	h := NewHasher(2)
	pw := nRunes("0123456789abcdefghijklmnopqrstuvwxyz", 100)
	enc, err := h.Hash(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		password string
		want     bool
	}{{pw, true}, {pw[:99], false}, {pw + "x", false}} {
		if ok, err := h.Verify(ctx, enc, tc.password); err != nil || ok != tc.want {
			t.Errorf("Verify of %d characters = %v, %v; want %v", len(tc.password), ok, err, tc.want)
		}
	}
	if _, err := h.Hash(ctx, strings.Repeat("x", maxPasswordBytes+1)); !errors.Is(err, ErrPasswordTooLong) {
		t.Errorf("Hash of %d bytes = %v, want ErrPasswordTooLong", maxPasswordBytes+1, err)
	}
	if ok, err := h.Verify(ctx, enc, strings.Repeat("x", maxPasswordBytes+1)); ok || err != nil {
		t.Errorf("Verify of %d bytes = %v, %v; want false", maxPasswordBytes+1, ok, err)
	}
}

// phc assembles an encoded hash from its fields.
func phc(params string, salt, key []byte) string {
	return "$argon2id$v=19$" + params + "$" + b64.EncodeToString(salt) + "$" + b64.EncodeToString(key)
}

func TestVerifyTampered(t *testing.T) {
	ctx := context.Background()
	h := NewHasher(2)
	salt16, key32 := make([]byte, 16), make([]byte, 32)
	refParams, refSalt, refKey := "m=19456,t=2,p=1", "cGFybGV5c2FsdHNhbHQxNg", "GUsTPwo/TzWSZDsPYE/9+1Vk7d+PWWYTmFoS5rqiM6c"
	tests := []struct {
		name    string
		encoded string
		invalid bool // an error wrapping ErrInvalidHash; otherwise (false, nil)
	}{
		{"time changed", strings.Replace(refHash, "t=2", "t=3", 1), false},
		{"memory changed", strings.Replace(refHash, "m=19456", "m=19457", 1), false},
		{"parallelism changed", strings.Replace(refHash, "p=1", "p=2", 1), false},
		{"empty", "", true},
		{"garbage", "garbage", true},
		{"binary garbage", "$\x00\xff$$$$", true},
		{"truncated", refHash[:len(refHash)-1], true},
		{"truncated to the salt", refHash[:strings.LastIndex(refHash, "$")], true},
		{"truncated to the parameters", "$argon2id$v=19$m=19456,t=2,p=1", true},
		{"extra field", refHash + "$AAAA", true},
		{"argon2i", strings.Replace(refHash, "argon2id", "argon2i", 1), true},
		{"version 16", strings.Replace(refHash, "v=19", "v=16", 1), true},
		{"no version", strings.Replace(refHash, "$v=19", "", 1), true},
		{"parameters reordered", strings.Replace(refHash, refParams, "t=2,m=19456,p=1", 1), true},
		{"extra parameter", strings.Replace(refHash, refParams, refParams+",keyid=1", 1), true},
		{"missing parameter", strings.Replace(refHash, refParams, "m=19456,t=2", 1), true},
		{"negative memory", strings.Replace(refHash, "m=19456", "m=-1", 1), true},
		{"signed memory", strings.Replace(refHash, "m=19456", "m=+19456", 1), true},
		{"hex memory", strings.Replace(refHash, "m=19456", "m=0x4c00", 1), true},
		{"empty memory", strings.Replace(refHash, "m=19456", "m=", 1), true},
		{"memory over 32 bits", strings.Replace(refHash, "m=19456", "m=4294967296", 1), true},
		{"memory 4 GiB", strings.Replace(refHash, "m=19456", "m=4194304", 1), true},
		{"memory 256 MiB + 1 KiB", strings.Replace(refHash, "m=19456", "m=262145", 1), true},
		{"memory below 8 KiB per lane", strings.Replace(refHash, refParams, "m=15,t=2,p=2", 1), true},
		{"time 0", strings.Replace(refHash, "t=2", "t=0", 1), true},
		{"time 11", strings.Replace(refHash, "t=2", "t=11", 1), true},
		{"time huge", strings.Replace(refHash, "t=2", "t=4294967295", 1), true},
		{"parallelism 0", strings.Replace(refHash, "p=1", "p=0", 1), true},
		{"parallelism 9", strings.Replace(refHash, "p=1", "p=9", 1), true},
		{"parallelism 256 (uint8 wrap)", strings.Replace(refHash, "p=1", "p=256", 1), true},
		{"key of 15 bytes", phc(refParams, salt16, make([]byte, 15)), true},
		{"key of 65 bytes", phc(refParams, salt16, make([]byte, 65)), true},
		{"salt of 7 bytes", phc(refParams, make([]byte, 7), key32), true},
		{"salt of 65 bytes", phc(refParams, make([]byte, 65), key32), true},
		{"empty salt", phc(refParams, nil, key32), true},
		{"padded base64", refHash + "=", true},
		{"non-canonical base64", refHash[:len(refHash)-1] + "d", true},
		{"URL base64", strings.Replace(refHash, "/", "_", 1), true},
		{"salt not base64", strings.Replace(refHash, refSalt, "!!!!!!!!!!!!", 1), true},
		{"key not base64", strings.Replace(refHash, refKey, strings.Repeat("*", 43), 1), true},
		{"very long", refHash + strings.Repeat("A", 1000), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := h.Verify(ctx, tc.encoded, refPassword)
			if ok {
				t.Fatal("Verify = true")
			}
			if tc.invalid != (err != nil) || (err != nil && !errors.Is(err, ErrInvalidHash)) {
				t.Fatalf("Verify error = %v, want ErrInvalidHash: %v", err, tc.invalid)
			}
			if !NeedsRehash(tc.encoded) {
				t.Error("NeedsRehash = false")
			}
		})
	}
	// Every prefix either fails to parse or parses within bounds.
	for i := range len(refHash) {
		if a, err := parseHash(refHash[:i]); err == nil && (len(a.key) < minArgonKeyLen || len(a.salt) < minArgonSaltLen) {
			t.Errorf("prefix %q parsed as %+v", refHash[:i], a)
		}
	}
}

func TestNeedsRehash(t *testing.T) {
	salt16, key32 := make([]byte, 16), make([]byte, 32)
	tests := []struct {
		name    string
		encoded string
		want    bool
	}{
		{"current", phc("m=19456,t=2,p=1", salt16, key32), false},
		{"reference implementation, current", refHash, false},
		{"older parameters", refOldHash, true},
		{"time", phc("m=19456,t=3,p=1", salt16, key32), true},
		{"memory", phc("m=65536,t=2,p=1", salt16, key32), true},
		{"parallelism", phc("m=19456,t=2,p=4", salt16, key32), true},
		{"key length", phc("m=19456,t=2,p=1", salt16, make([]byte, 64)), true},
		{"salt length", phc("m=19456,t=2,p=1", make([]byte, 8), key32), true},
		{"unparseable", "$2a$10$abcdefghijklmnopqrstuv", true},
	}
	for _, tc := range tests {
		if got := NeedsRehash(tc.encoded); got != tc.want {
			t.Errorf("%s: NeedsRehash = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestHasherBoundsConcurrency starts more hashes than slots and records the
// most ever computed at once.
func TestHasherBoundsConcurrency(t *testing.T) {
	const slots, hashes = 2, 6
	h := NewHasher(slots)
	var cur, peak, entered atomic.Int32
	full := make(chan struct{})
	h.onSlot = func() func() {
		n := cur.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		// The first ones wait for each other, so the slots are all used
		// at once at least once.
		if e := entered.Add(1); e < slots {
			<-full
		} else if e == slots {
			close(full)
		}
		return func() { cur.Add(-1) }
	}
	var wg sync.WaitGroup
	errs := make(chan error, hashes)
	for range hashes {
		wg.Go(func() {
			_, err := h.Hash(context.Background(), refPassword)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := peak.Load(); got != slots {
		t.Errorf("at most %d hashes in flight, want %d", got, slots)
	}
	if got := entered.Load(); got != hashes {
		t.Errorf("%d hashes computed, want %d", got, hashes)
	}
}

// TestHasherContextEnds: a caller whose context ends while every slot is
// taken gets ErrBusy and the context's error, at once.
func TestHasherContextEnds(t *testing.T) {
	h := NewHasher(1)
	taken, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	h.onSlot = func() func() {
		if first.CompareAndSwap(false, true) {
			close(taken)
			<-release
		}
		return func() {}
	}
	var wg sync.WaitGroup
	var holderErr error
	wg.Go(func() { _, holderErr = h.Hash(context.Background(), refPassword) })
	<-taken

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeout(context.Background(), -1)
	defer cancel2()
	for _, tc := range []struct {
		ctx  context.Context
		want error
	}{{canceled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		if _, err := h.Hash(tc.ctx, refPassword); !errors.Is(err, ErrBusy) || !errors.Is(err, tc.want) {
			t.Errorf("Hash = %v, want ErrBusy and %v", err, tc.want)
		}
		if ok, err := h.Verify(tc.ctx, refHash, refPassword); ok || !errors.Is(err, ErrBusy) || !errors.Is(err, tc.want) {
			t.Errorf("Verify = %v, %v; want ErrBusy and %v", ok, err, tc.want)
		}
		h.Dummy(tc.ctx, refPassword) // returns rather than waits
	}
	close(release)
	wg.Wait()
	if holderErr != nil {
		t.Errorf("the hash holding the slot: %v", holderErr)
	}
}

func TestDummy(t *testing.T) {
	h := NewHasher(1)
	var computed atomic.Int32
	h.onSlot = func() func() { computed.Add(1); return func() {} }
	h.Dummy(context.Background(), refPassword)
	first := h.dummy
	if NeedsRehash(first) {
		t.Errorf("the dummy hash %q does not have the current parameters", first)
	}
	h.Dummy(context.Background(), "another password")
	if h.dummy != first {
		t.Error("the dummy hash was computed twice")
	}
	if got := computed.Load(); got != 2 {
		t.Errorf("two Dummy calls computed %d hashes, want 2", got)
	}
}

// FuzzParseHash: no input makes the parser panic or accept parameters
// out of bounds.
func FuzzParseHash(f *testing.F) {
	for _, s := range []string{refHash, refOldHash, "", "$argon2id$v=19$m=1,t=1,p=1$$", "$$$$$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseHash(s)
		if err != nil {
			return
		}
		if a.memory > maxArgonMemory || a.time < 1 || a.time > maxArgonTime || a.threads < 1 ||
			a.threads > maxArgonThreads || len(a.key) < minArgonKeyLen || len(a.key) > maxArgonKeyLen {
			t.Fatalf("%q parsed as %+v", s, a)
		}
	})
}

// BenchmarkHash measures one hash with the production parameters.
func BenchmarkHash(b *testing.B) {
	h := NewHasher(1)
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.Hash(ctx, refPassword); err != nil {
			b.Fatal(err)
		}
	}
}
