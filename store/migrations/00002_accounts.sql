-- +goose Up
-- Accounts, sessions and everything the TOTP-MFA login needs (see auth/).
-- Secrets are never stored in the clear: passwords as argon2id hashes,
-- session, challenge and link tokens as SHA-256 hashes, TOTP secrets and
-- signing keys sealed with AES-256-GCM, recovery codes as HMAC-SHA256.
CREATE TABLE users (
    id              TEXT    PRIMARY KEY,
    username        TEXT    NOT NULL UNIQUE,
    display_name    TEXT    NOT NULL,
    password_hash   TEXT    NOT NULL DEFAULT '',
    role            TEXT    NOT NULL DEFAULT 'member',
    disabled        BOOLEAN NOT NULL DEFAULT FALSE,
    mfa_enabled     BOOLEAN NOT NULL DEFAULT FALSE,
    totp_secret     TEXT    NOT NULL DEFAULT '',
    totp_last_step  BIGINT  NOT NULL DEFAULT 0,
    created_us      BIGINT  NOT NULL,
    updated_us      BIGINT  NOT NULL,
    last_login_us   BIGINT  NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    id            TEXT   PRIMARY KEY,
    token_hash    TEXT   NOT NULL UNIQUE,
    user_id       TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token    TEXT   NOT NULL,
    client_ip     TEXT   NOT NULL,
    user_agent    TEXT   NOT NULL,
    created_us    BIGINT NOT NULL,
    last_seen_us  BIGINT NOT NULL,
    expires_us    BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE auth_challenges (
    token_hash      TEXT    PRIMARY KEY,
    user_id         TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose         TEXT    NOT NULL,
    pending_secret  TEXT    NOT NULL DEFAULT '',
    failures        INTEGER NOT NULL DEFAULT 0,
    created_us      BIGINT  NOT NULL,
    expires_us      BIGINT  NOT NULL
);
CREATE INDEX auth_challenges_user ON auth_challenges (user_id);

CREATE TABLE recovery_codes (
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT   NOT NULL,
    used_us    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE link_tokens (
    token_hash  TEXT   PRIMARY KEY,
    purpose     TEXT   NOT NULL,
    user_id     TEXT   REFERENCES users (id) ON DELETE CASCADE,
    created_us  BIGINT NOT NULL,
    expires_us  BIGINT NOT NULL,
    used_us     BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE login_throttle (
    key              TEXT    PRIMARY KEY,
    failures         INTEGER NOT NULL DEFAULT 0,
    last_failure_us  BIGINT  NOT NULL DEFAULT 0,
    locked_until_us  BIGINT  NOT NULL DEFAULT 0
);

CREATE TABLE rate_buckets (
    key         TEXT             PRIMARY KEY,
    tokens      DOUBLE PRECISION NOT NULL,
    updated_us  BIGINT           NOT NULL
);

CREATE TABLE signing_keys (
    kid          TEXT   PRIMARY KEY,
    alg          TEXT   NOT NULL,
    private_key  TEXT   NOT NULL,
    created_us   BIGINT NOT NULL
);

-- +goose Down
DROP TABLE signing_keys;
DROP TABLE rate_buckets;
DROP TABLE login_throttle;
DROP TABLE link_tokens;
DROP TABLE recovery_codes;
DROP TABLE auth_challenges;
DROP TABLE sessions;
DROP TABLE users;
