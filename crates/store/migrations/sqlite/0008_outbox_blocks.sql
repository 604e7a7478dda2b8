-- The outbox holds blocks of events: the events of one tenant and type that
-- one transaction wrote, one line each (event id, a tab, the JSON payload).
-- A block's id is the number of its last event; its events are numbered
-- id - count + 1 ..= id, so cursors keep their meaning. Each old row becomes
-- a block of one with the same id.
CREATE TABLE outbox_blocks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  TEXT NOT NULL,
    type       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    events     TEXT NOT NULL -- last, so reading a block's head never reads its text
);
INSERT INTO outbox_blocks (id, tenant_id, type, created_at, count, events)
    SELECT id, tenant_id, type, created_at, 1, event_id || char(9) || data || char(10)
    FROM outbox ORDER BY id;
-- Numbers already handed out stay used, even where the sweeper removed the row.
DELETE FROM sqlite_sequence WHERE name = 'outbox_blocks';
INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox_blocks', seq FROM sqlite_sequence WHERE name = 'outbox';
DROP TABLE outbox;
ALTER TABLE outbox_blocks RENAME TO outbox;
CREATE INDEX outbox_tenant ON outbox (tenant_id, id);
CREATE INDEX outbox_tenant_type ON outbox (tenant_id, type, id);
