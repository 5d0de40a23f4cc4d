-- A client's optional postal address, for letters only (docs/protocol.md, "Letters"): the
-- minimum a postal service delivers on, as one JSON object (recipient, street lines,
-- locality, region, postal code, country). NULL: letters are prepared unaddressed. Like the
-- rest of the directory it is never written to the audit trail or the logs (client_changes
-- names the field `postal_address` when it changes, never its value).
ALTER TABLE clients ADD COLUMN postal_address jsonb;
