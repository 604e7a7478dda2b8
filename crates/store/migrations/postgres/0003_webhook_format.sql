-- What a webhook endpoint receives: 'standard' (every event, Standard Webhooks
-- payload) or a dialect's push format (e.g. 'smarthub': SIM status and IMEI
-- changes in Smarthub's push shape). Both are signed the same way.
ALTER TABLE webhooks ADD COLUMN format TEXT NOT NULL DEFAULT 'standard';
