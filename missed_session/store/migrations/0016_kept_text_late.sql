-- A kept text whose session moved on before it could take it (closed, or refused it as too
-- late) is not dropped: it reaches the session's therapist as a late client response, a
-- notice (urgent when the session escalated to the emergency contact while the text was
-- kept). `late_response` is that outcome; the notice's key is kept in the reason.
ALTER TABLE kept_texts DROP CONSTRAINT kept_texts_outcome_check;
ALTER TABLE kept_texts ADD CONSTRAINT kept_texts_outcome_check
    CHECK (outcome IN ('delivered', 'refused', 'session_gone', 'no_open_session', 'unreadable',
                       'late_response'));
ALTER TABLE kept_text_deliveries DROP CONSTRAINT kept_text_deliveries_outcome_check;
ALTER TABLE kept_text_deliveries ADD CONSTRAINT kept_text_deliveries_outcome_check
    CHECK (outcome IN ('pending', 'delivered', 'refused', 'session_gone', 'late_response'));
