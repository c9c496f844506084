// Package auth owns who someone is: accounts, argon2id passwords, TOTP
// multi-factor sign-in with replay protection, recovery codes, sessions,
// API tokens (EdDSA JWTs), sign-in throttling, the first-run setup link and
// operators' enrolment links.
//
// Every sign-in needs a password and a TOTP code (or a recovery code); a
// session exists only after both. Secrets are never stored in the clear and
// never logged: passwords are argon2id hashes, session/challenge/link tokens
// SHA-256 hashes, TOTP secrets and signing keys sealed with AES-256-GCM,
// recovery codes HMAC-SHA256. Every security event is recorded in audit/.
//
// auth decides identity, never permissions: what an identity may do is
// rbac's answer.
package auth
