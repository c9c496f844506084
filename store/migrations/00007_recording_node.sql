-- +goose Up
-- Multi-node mode (issue 11): the cluster node that makes a recording
-- (--node-id, or the random id of a node started without one); '' on a
-- single node and for the recordings made before. A node recovers, as
-- interrupted, only its own recordings left "recording" and those of
-- nodes that are no longer live (recording/).
ALTER TABLE recordings ADD COLUMN node TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE recordings DROP COLUMN node;
