-- Where a client of the directory is known in an EHR's FHIR server, so that an Appointment
-- or a Subscription notification that names its Patient by reference (`Patient/123` under
-- the server's base) or by identifier (system|value) finds the client without carrying
-- the Patient. Written when a Patient is imported (read from the EHR with SMART Backend
-- Services, or `clients import --fhir`); ids only, never a name or a number.
CREATE TABLE client_fhir_links (
    kind       text        NOT NULL CHECK (kind IN ('reference', 'identifier')),
    key        text        NOT NULL,
    client_ref text        NOT NULL REFERENCES clients (client_ref) ON DELETE CASCADE,
    linked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);
CREATE INDEX client_fhir_links_client ON client_fhir_links (client_ref);
