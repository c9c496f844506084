package recording

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"
)

// IdentityFile is the name of the recordings' identity in the data
// directory.
const IdentityFile = "recording-identity.txt"

// LoadOrCreateIdentity returns the X25519 identity kept in
// <dataDir>/recording-identity.txt, creating it (0600) on first use. A
// file that its group or others may read is refused: whoever reads it can
// decrypt every recording. Operators may instead configure a recipient
// and keep the identity off the media server.
func LoadOrCreateIdentity(dataDir string) (*age.X25519Identity, error) {
	path := filepath.Join(dataDir, IdentityFile)
	id, err := loadIdentity(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return id, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("recording: create %s: %w", dataDir, err)
	}
	id, err = age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("recording: generate an identity: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // made meanwhile by another process
		return loadIdentity(path)
	}
	if err != nil {
		return nil, fmt.Errorf("recording: create %s: %w", path, err)
	}
	content := fmt.Sprintf("# Parley recording identity: it decrypts every recording. Keep it secret.\n# created: %s\n# public key: %s\n%s\n",
		time.Now().UTC().Format(time.RFC3339), id.Recipient(), id)
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("recording: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("recording: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("recording: write %s: %w", path, err)
	}
	return id, nil
}

func loadIdentity(path string) (*age.X25519Identity, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("recording: %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("recording: %s may be read by others (mode %v): make it 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("recording: read %s: %w", path, err)
	}
	ids, err := age.ParseIdentities(strings.NewReader(string(b)))
	if err != nil {
		// The parser's message may quote the file: say less.
		return nil, fmt.Errorf("recording: %s holds no valid age identity", path)
	}
	for _, id := range ids {
		if x, ok := id.(*age.X25519Identity); ok {
			return x, nil
		}
	}
	return nil, fmt.Errorf("recording: %s holds no X25519 identity", path)
}
