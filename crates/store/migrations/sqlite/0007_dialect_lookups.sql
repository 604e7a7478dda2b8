-- Dialect look-ups: ECC's event feed reads one event type after a cursor
-- (GET /ecc/v1/events/{type}) without scanning the tenant's other events.
CREATE INDEX outbox_tenant_type ON outbox (tenant_id, type, id);
