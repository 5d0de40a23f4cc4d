"""Scheduler standards intake: FHIR R4, HL7 v2 SIU, Cal.com and Calendly.

FHIR Appointment and Subscription notifications, HL7 v2 SIU over HTTP and MLLP, and the
Cal.com and Calendly webhooks all end up as the same few intake commands.

Each format has a pure translator (message -> one intake command) so the clinical meaning
of every status and trigger is unit-tested without servers; `dispatch` executes commands
through the application layer, and the HTTP routes and the MLLP listener only parse and
render. See docs/integration-standards.md.
"""
