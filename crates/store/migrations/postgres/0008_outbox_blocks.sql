-- The outbox holds blocks of events: the events of one tenant and type that
-- one transaction wrote, one line each (event id, a tab, the JSON payload).
-- A block's id is the number of its last event; its events are numbered
-- id - count + 1 ..= id, so cursors keep their meaning. Each old row becomes
-- a block of one with the same id.
CREATE TABLE outbox_blocks (
    id         BIGINT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    type       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    count      BIGINT NOT NULL,
    events     TEXT NOT NULL
);
INSERT INTO outbox_blocks (id, tenant_id, type, created_at, count, events)
    SELECT id, tenant_id, type, created_at, 1, event_id || chr(9) || data || chr(10)
    FROM outbox ORDER BY id;
-- The number of the last event handed out, in one row. A transaction that
-- writes events updates it as its last write, so it holds the row lock
-- until it commits: numbers are handed out in commit order, and a reader
-- that has seen event n never later sees a smaller number appear.
-- Numbers already handed out stay used, even where the sweeper removed the row.
CREATE TABLE outbox_counter (last BIGINT NOT NULL);
INSERT INTO outbox_counter (last)
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM outbox_id_seq;
DROP TABLE outbox;
ALTER TABLE outbox_blocks RENAME TO outbox;
CREATE INDEX outbox_tenant ON outbox (tenant_id, id);
CREATE INDEX outbox_tenant_type ON outbox (tenant_id, type, id);
