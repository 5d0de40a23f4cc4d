-- The mass no-show brake (missed_session/domain/brake.py, missed_session/store/brake.py).
-- At each no-show the brake counts the sessions whose grace period passed in the window:
-- a range over the attendance projection's start, so it needs an index there.
CREATE INDEX projection_attendance_start ON projection_attendance (start_at);

-- One row per episode: a burst of no-shows that held client outreach. The first session
-- held opens it (and pages the on-call clinician and the supervisor, once); a supervisor's
-- release or stand-down of the whole episode decides it. Working state, not the record:
-- every hold, release and stand-down is in each session's audit trail.
CREATE TABLE brake_episodes (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    opened_at      timestamptz NOT NULL,
    opened_by      text        NOT NULL,
    no_shows       integer     NOT NULL CHECK (no_shows >= 0),
    due            integer     NOT NULL CHECK (due >= 0),
    window_minutes integer     NOT NULL CHECK (window_minutes >= 1),
    state          text        NOT NULL DEFAULT 'open'
                               CHECK (state IN ('open', 'released', 'stood_down')),
    decided_by     text,
    decided_at     timestamptz
);
CREATE INDEX brake_episodes_opened ON brake_episodes (opened_at);

-- The sessions an episode held: whom a release or a stand-down of the episode reaches.
CREATE TABLE brake_holds (
    episode_id bigint      NOT NULL REFERENCES brake_episodes (id),
    session_id text        NOT NULL,
    risk_tier  text        NOT NULL,
    held_at    timestamptz NOT NULL,
    PRIMARY KEY (episode_id, session_id)
);
