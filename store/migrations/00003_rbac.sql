-- +goose Up
-- The Casbin policy that rbac/ evaluates: one row per policy line.
-- ptype 'p' is a permission (role, domain, action): domain 'room' is the
-- template that applies in every room where the role is bound, '*' is
-- global. ptype 'g' is a binding (subject, role, domain): domain
-- 'room:<id>' for a room, '*' for a global role. The natural key makes a
-- line unique and serves both engines without an auto-increment column.
CREATE TABLE casbin_rule (
    ptype  TEXT NOT NULL,
    v0     TEXT NOT NULL DEFAULT '',
    v1     TEXT NOT NULL DEFAULT '',
    v2     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (ptype, v0, v1, v2)
);
-- Deleting a room removes every binding of its domain.
CREATE INDEX casbin_rule_domain ON casbin_rule (ptype, v2);

-- The default roles. Only admin spans rooms; a global member may create
-- rooms. Custom room roles are added later as data.
INSERT INTO casbin_rule (ptype, v0, v1, v2) VALUES
    ('p', 'admin', '*', 'rooms.create'),
    ('p', 'admin', '*', 'room.join'),
    ('p', 'admin', '*', 'room.publish'),
    ('p', 'admin', '*', 'room.screen'),
    ('p', 'admin', '*', 'room.chat'),
    ('p', 'admin', '*', 'room.moderate'),
    ('p', 'admin', '*', 'room.record'),
    ('p', 'admin', '*', 'room.manage'),
    ('p', 'admin', '*', 'recording.view'),
    ('p', 'admin', '*', 'recording.download'),
    ('p', 'admin', '*', 'recording.share'),
    ('p', 'admin', '*', 'recording.delete'),
    ('p', 'admin', '*', 'admin.users'),
    ('p', 'admin', '*', 'admin.audit'),
    ('p', 'member', '*', 'rooms.create'),
    ('p', 'host', 'room', 'room.join'),
    ('p', 'host', 'room', 'room.publish'),
    ('p', 'host', 'room', 'room.screen'),
    ('p', 'host', 'room', 'room.chat'),
    ('p', 'host', 'room', 'room.moderate'),
    ('p', 'host', 'room', 'room.record'),
    ('p', 'host', 'room', 'room.manage'),
    ('p', 'host', 'room', 'recording.view'),
    ('p', 'host', 'room', 'recording.download'),
    ('p', 'host', 'room', 'recording.share'),
    ('p', 'host', 'room', 'recording.delete'),
    ('p', 'moderator', 'room', 'room.join'),
    ('p', 'moderator', 'room', 'room.publish'),
    ('p', 'moderator', 'room', 'room.screen'),
    ('p', 'moderator', 'room', 'room.chat'),
    ('p', 'moderator', 'room', 'room.moderate'),
    ('p', 'member', 'room', 'room.join'),
    ('p', 'member', 'room', 'room.publish'),
    ('p', 'member', 'room', 'room.screen'),
    ('p', 'member', 'room', 'room.chat'),
    ('p', 'viewer', 'room', 'room.join'),
    ('p', 'viewer', 'room', 'room.chat'),
    ('p', 'guest', 'room', 'room.join'),
    ('p', 'guest', 'room', 'room.chat');

-- Global roles move from users.role into the policy.
INSERT INTO casbin_rule (ptype, v0, v1, v2)
SELECT 'g', 'user:' || id, role, '*' FROM users WHERE role IN ('admin', 'member');
ALTER TABLE users DROP COLUMN role;

-- +goose Down
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
UPDATE users SET role = 'admin' WHERE EXISTS (
    SELECT 1 FROM casbin_rule
    WHERE ptype = 'g' AND v0 = 'user:' || users.id AND v1 = 'admin' AND v2 = '*');
DROP TABLE casbin_rule;
