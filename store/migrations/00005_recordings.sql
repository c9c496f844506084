-- +goose Up
-- The catalog of encrypted meeting recordings (see recording/). The media
-- itself is in files named by random ids under the recordings directory;
-- these rows say what each file holds, who may see it beyond the room's
-- roles (shares), and when it expires.
--
-- Recordings do not reference rooms: deleting a room keeps its recordings
-- until they expire (under the global retention, the room's own being gone
-- with it), so that deleting a room never silently destroys recorded
-- meetings. Tracks and shares belong to their recording and go with it.

-- Per-room retention of recordings in seconds; 0 = the server's default.
ALTER TABLE rooms ADD COLUMN recording_retention_s BIGINT NOT NULL DEFAULT 0;

CREATE TABLE recordings (
    id          TEXT   PRIMARY KEY,
    room_id     TEXT   NOT NULL,
    started_by  TEXT   NOT NULL,
    started_us  BIGINT NOT NULL,
    ended_us    BIGINT NOT NULL DEFAULT 0,
    -- recording | complete | incomplete | failed
    status      TEXT   NOT NULL
);
CREATE INDEX recordings_room ON recordings (room_id);
CREATE INDEX recordings_started ON recordings (started_us);

-- One row per file (a participant's camera and microphone, or a screen
-- share), and one per track that could not be recorded (file '').
CREATE TABLE recording_tracks (
    id                TEXT   PRIMARY KEY,
    recording_id      TEXT   NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    file              TEXT   NOT NULL,
    kind              TEXT   NOT NULL,
    participant_id    TEXT   NOT NULL,
    participant_name  TEXT   NOT NULL,
    -- JSON array of MIME types, e.g. ["video/VP8","audio/opus"]
    codecs            TEXT   NOT NULL DEFAULT '[]',
    started_us        BIGINT NOT NULL,
    duration_ms       BIGINT NOT NULL DEFAULT 0,
    -- plaintext bytes of the WebM written so far
    size              BIGINT NOT NULL DEFAULT 0,
    -- recording | complete | incomplete | failed | unsupported
    status            TEXT   NOT NULL,
    note              TEXT   NOT NULL DEFAULT '',
    -- SHA-256 of the age header and stream nonce: binds the file to this row
    header_sha256     TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX recording_tracks_recording ON recording_tracks (recording_id, started_us);

CREATE TABLE recording_shares (
    recording_id  TEXT   NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    user_id       TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_by    TEXT   NOT NULL,
    created_us    BIGINT NOT NULL,
    expires_us    BIGINT NOT NULL,
    PRIMARY KEY (recording_id, user_id)
);
CREATE INDEX recording_shares_user ON recording_shares (user_id);

-- +goose Down
DROP TABLE recording_shares;
DROP TABLE recording_tracks;
DROP TABLE recordings;
ALTER TABLE rooms DROP COLUMN recording_retention_s;
