-- The personalised SAIP profile package of a generated profile (DER),
-- sealed with the master key for purpose 'profile_package'. It holds Ki.
ALTER TABLE profiles ADD COLUMN package_enc TEXT;
