-- SGP.22 profile lifecycle: the EID a profile is linked to by ES2+, and the
-- indexes the expiry sweep and DownloadOrder-by-profile-type use.
ALTER TABLE profiles ADD COLUMN eid TEXT;
CREATE INDEX profiles_expiry ON profiles (expires_at)
    WHERE expires_at IS NOT NULL AND state IN ('AVAILABLE', 'ALLOCATED', 'LINKED', 'CONFIRMED', 'RELEASED');
CREATE INDEX profiles_available ON profiles (tenant_id, template, iccid) WHERE state = 'AVAILABLE';
