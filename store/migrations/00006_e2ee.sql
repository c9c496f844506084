-- +goose Up
-- End-to-end encrypted rooms (issue 10): every browser in such a room's
-- meetings encrypts its media before it leaves, so the SFU forwards what it
-- cannot read and the server refuses to record it. The setting changes only
-- between meetings (server/rooms.go).
ALTER TABLE rooms ADD COLUMN e2ee BOOLEAN NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE rooms DROP COLUMN e2ee;
