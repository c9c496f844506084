package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-meet/parley/audit"
	"github.com/parley-meet/parley/store"
)

// API tokens are JWTs signed with Ed25519 (RFC 8725 practice): the header
// says typ "at+jwt" and which of our keys signed it (kid); the claims carry
// iss (the public origin), aud, sub (the user), sid (the session that
// minted it), iat, nbf, exp (at most 15 minutes later) and a random jti.
// Verification accepts only EdDSA, only our own keys, and requires every
// one of those claims. A token dies with its session.
const (
	tokenType     = "at+jwt"
	tokenAudience = "parley-api"
	tokenAlg      = "EdDSA"
)

type tokenClaims struct {
	jwt.RegisteredClaims
	SID string `json:"sid"`
}

// tokenSigner holds the signing keys, loaded from the store on first use
// and again when a token names a key we do not know (another node made it),
// at most once every reloadEvery.
type tokenSigner struct {
	svc *Service

	mu         sync.Mutex
	keys       map[string]ed25519.PrivateKey
	current    string
	lastReload time.Time
}

const reloadEvery = 10 * time.Second

func (ts *tokenSigner) load(ctx context.Context) error {
	rows, err := ts.svc.store.SigningKeys(ctx)
	if err != nil {
		return err
	}
	keys := make(map[string]ed25519.PrivateKey, len(rows))
	current := ""
	for _, r := range rows {
		if r.Alg != tokenAlg {
			continue
		}
		seed, err := ts.svc.keys.Open(r.PrivateKey, "signing-key:"+r.KID)
		if err != nil || len(seed) != ed25519.SeedSize {
			return fmt.Errorf("signing key %s: %w", r.KID, errUnseal)
		}
		keys[r.KID] = ed25519.NewKeyFromSeed(seed)
		if current == "" {
			current = r.KID // rows are newest first
		}
	}
	ts.keys, ts.current, ts.lastReload = keys, current, ts.svc.now()
	return nil
}

// signingKey returns the newest key, creating the first one if need be.
func (ts *tokenSigner) signingKey(ctx context.Context) (string, ed25519.PrivateKey, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.keys == nil {
		if err := ts.load(ctx); err != nil {
			return "", nil, err
		}
	}
	if ts.current == "" {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return "", nil, err
		}
		kid := randomID()
		err = ts.svc.store.AddSigningKey(ctx, store.SigningKey{
			KID: kid, Alg: tokenAlg, PrivateKey: ts.svc.keys.Seal(priv.Seed(), "signing-key:"+kid), CreatedUS: ts.svc.nowUS(),
		})
		if err != nil {
			return "", nil, err
		}
		if err := ts.load(ctx); err != nil {
			return "", nil, err
		}
	}
	return ts.current, ts.keys[ts.current], nil
}

// publicKey finds the verification key for kid among our own keys.
func (ts *tokenSigner) publicKey(ctx context.Context, kid string) (ed25519.PublicKey, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if k, ok := ts.keys[kid]; ok {
		return k.Public().(ed25519.PublicKey), true
	}
	if ts.keys == nil || ts.svc.now().Sub(ts.lastReload) >= reloadEvery {
		if err := ts.load(ctx); err != nil {
			ts.svc.log.Warn("loading signing keys failed", "err", err)
			return nil, false
		}
	}
	k, ok := ts.keys[kid]
	if !ok {
		return nil, false
	}
	return k.Public().(ed25519.PublicKey), true
}

// MintToken issues an API token for the principal's session, valid for
// Config.TokenTTL but never beyond the session's absolute end.
func (s *Service) MintToken(ctx context.Context, p *Principal, m Meta) (token string, expiresIn time.Duration, err error) {
	kid, key, err := s.tokens.signingKey(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("mint token: %w", err)
	}
	now := s.now().Truncate(time.Second)
	exp := now.Add(s.cfg.TokenTTL)
	if end := time.UnixMicro(p.Session.ExpiresUS).Truncate(time.Second); end.Before(exp) {
		exp = end
	}
	claims := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.Issuer, Subject: p.User.ID, Audience: jwt.ClaimStrings{tokenAudience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp),
			ID: randomID(),
		},
		SID: p.Session.ID,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = kid
	t.Header["typ"] = tokenType
	signed, err := t.SignedString(key)
	if err != nil {
		return "", 0, fmt.Errorf("mint token: %w", err)
	}
	s.record(ctx, m, userActor(p.User.ID), "auth.token_issued", userActor(p.User.ID), audit.Success,
		map[string]any{"jti": claims.ID, "expires_in_s": int(exp.Sub(now).Seconds())})
	return signed, exp.Sub(now), nil
}

// errBadToken is every reason a token is refused; the caller answers 401
// without saying which.
var errBadToken = errors.New("invalid token")

// AuthenticateToken resolves a Bearer token to the session that minted it.
func (s *Service) AuthenticateToken(ctx context.Context, raw string) (*Principal, error) {
	if raw == "" || len(raw) > maxTokenLen {
		return nil, ErrUnauthenticated
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{tokenAlg}),
		jwt.WithAudience(tokenAudience),
		jwt.WithIssuer(s.cfg.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.now),
		jwt.WithStrictDecoding(),
	)
	var claims tokenClaims
	_, err := parser.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != tokenType {
			return nil, errBadToken
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" || len(kid) > 64 {
			return nil, errBadToken
		}
		pub, ok := s.tokens.publicKey(ctx, kid)
		if !ok {
			return nil, errBadToken
		}
		return pub, nil
	})
	if err != nil {
		return nil, ErrUnauthenticated
	}
	if claims.NotBefore == nil || claims.IssuedAt == nil || claims.ID == "" || claims.SID == "" || claims.Subject == "" ||
		claims.ExpiresAt.Sub(claims.IssuedAt.Time) > 15*time.Minute {
		return nil, ErrUnauthenticated
	}
	se, err := s.store.SessionByID(ctx, claims.SID)
	if errors.Is(err, store.ErrNotFound) || err == nil && se.UserID != claims.Subject {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	return s.principal(ctx, se, true)
}
