package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SecretKeyFile is the name of the key file in the data directory.
const SecretKeyFile = "secret.key"

// ErrSecretKey marks an unusable PARLEY_SECRET_KEY or key file.
var ErrSecretKey = errors.New("secret key")

// Keyring holds the keys derived from Parley's one secret key: an AES-256-GCM
// key that seals TOTP secrets and signing keys at rest, and an HMAC key for
// recovery codes. Every node of one deployment must share the secret key.
type Keyring struct {
	seal        cipher.AEAD
	recoveryMAC []byte
}

// LoadKeyring derives the keyring from envKey (base64 of 32 bytes, from
// PARLEY_SECRET_KEY) or, when it is empty, from the key file in dataDir,
// which is created (0600) on first use. created reports a new file.
func LoadKeyring(dataDir, envKey string) (k *Keyring, created bool, err error) {
	var secret []byte
	if envKey != "" {
		if secret, err = decodeKey(envKey); err != nil {
			return nil, false, fmt.Errorf("%w: PARLEY_SECRET_KEY: %v", ErrSecretKey, err)
		}
	} else {
		path := filepath.Join(dataDir, SecretKeyFile)
		data, rerr := os.ReadFile(path)
		switch {
		case rerr == nil:
			if secret, err = decodeKey(string(data)); err != nil {
				return nil, false, fmt.Errorf("%w: %s: %v", ErrSecretKey, path, err)
			}
		case errors.Is(rerr, os.ErrNotExist):
			secret = make([]byte, 32)
			rand.Read(secret)
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return nil, false, fmt.Errorf("create data directory: %w", err)
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return nil, false, fmt.Errorf("%w: create %s: %v", ErrSecretKey, path, err)
			}
			_, werr := f.WriteString(base64.StdEncoding.EncodeToString(secret) + "\n")
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				os.Remove(path)
				return nil, false, fmt.Errorf("%w: write %s: %v", ErrSecretKey, path, werr)
			}
			created = true
		default:
			return nil, false, fmt.Errorf("%w: %v", ErrSecretKey, rerr)
		}
	}
	k, err = newKeyring(secret)
	return k, created, err
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != 32 {
				return nil, fmt.Errorf("want 32 bytes, got %d", len(b))
			}
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

func newKeyring(secret []byte) (*Keyring, error) {
	sealKey, err := hkdf.Key(sha256.New, secret, nil, "parley seal v1", 32)
	if err != nil {
		return nil, err
	}
	macKey, err := hkdf.Key(sha256.New, secret, nil, "parley recovery codes v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Keyring{seal: aead, recoveryMAC: macKey}, nil
}

// errUnseal is returned for sealed data that does not open.
var errUnseal = errors.New("sealed data does not open (wrong secret key or tampered)")

// Seal encrypts plaintext bound to context (for example a user id, so a
// sealed secret cannot be moved to another row) and returns base64 text.
func (k *Keyring) Seal(plaintext []byte, context string) string {
	nonce := make([]byte, k.seal.NonceSize())
	rand.Read(nonce)
	return base64.StdEncoding.EncodeToString(k.seal.Seal(nonce, nonce, plaintext, []byte(context)))
}

// Open reverses Seal.
func (k *Keyring) Open(sealed, context string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(b) < k.seal.NonceSize() {
		return nil, errUnseal
	}
	pt, err := k.seal.Open(nil, b[:k.seal.NonceSize()], b[k.seal.NonceSize():], []byte(context))
	if err != nil {
		return nil, errUnseal
	}
	return pt, nil
}

// recoveryHash is the stored form of a normalised recovery code.
func (k *Keyring) recoveryHash(userID, code string) string {
	m := hmac.New(sha256.New, k.recoveryMAC)
	m.Write([]byte(userID))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return base64.RawStdEncoding.EncodeToString(m.Sum(nil))
}
