-- +goose Up
-- Rooms, their invites, and the guest sessions invites open. Who may do
-- what in a room is not here: it is rbac's policy (casbin_rule).
CREATE TABLE rooms (
    id              TEXT    PRIMARY KEY,
    name            TEXT    NOT NULL,
    lobby           BOOLEAN NOT NULL DEFAULT FALSE,
    guests_allowed  BOOLEAN NOT NULL DEFAULT FALSE,
    created_by      TEXT    NOT NULL,
    created_us      BIGINT  NOT NULL,
    updated_us      BIGINT  NOT NULL
);

CREATE TABLE invites (
    id          TEXT    PRIMARY KEY,
    room_id     TEXT    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    token_hash  TEXT    NOT NULL UNIQUE,
    role        TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_us  BIGINT  NOT NULL,
    expires_us  BIGINT  NOT NULL,
    max_uses    INTEGER NOT NULL,
    uses        INTEGER NOT NULL DEFAULT 0,
    revoked_us  BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX invites_room ON invites (room_id);

CREATE TABLE guest_sessions (
    id            TEXT   PRIMARY KEY,
    token_hash    TEXT   NOT NULL UNIQUE,
    room_id       TEXT   NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    invite_id     TEXT   NOT NULL,
    display_name  TEXT   NOT NULL,
    client_ip     TEXT   NOT NULL,
    created_us    BIGINT NOT NULL,
    last_seen_us  BIGINT NOT NULL,
    expires_us    BIGINT NOT NULL
);
CREATE INDEX guest_sessions_room ON guest_sessions (room_id);

-- +goose Down
DROP TABLE guest_sessions;
DROP TABLE invites;
DROP TABLE rooms;
