
-- ---------------------------------------------------------------------------
-- Break-the-glass (1.5, doc/governance.md): the insert trigger flags an
-- emergency access (tool_calls.break_glass, with "break_glass_reason" in
-- session_metadata, src/insert.c); a queue lists the flagged calls no
-- review has closed; review_break_glass() records a review, audited.
-- ---------------------------------------------------------------------------

-- the flagged calls only: the queue reads this index, not the table
CREATE INDEX tool_calls_break_glass ON tool_audit.tool_calls (id) WHERE break_glass;

CREATE SEQUENCE tool_audit.break_glass_reviews_review_id_seq;
CREATE TABLE tool_audit.break_glass_reviews (
    review_id      bigint PRIMARY KEY DEFAULT nextval('tool_audit.break_glass_reviews_review_id_seq'),
    call_id        bigint NOT NULL,
    call_event_id  uuid NOT NULL,
    tenant_id      text,
    outcome        text NOT NULL
                   CONSTRAINT outcome_is_known CHECK (outcome IN ('justified', 'unjustified', 'needs_followup')),
    note           text NOT NULL,
    reviewed_by    text NOT NULL,
    reviewed_login text NOT NULL,
    reviewed_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    admin_event_id bigint NOT NULL
);
ALTER SEQUENCE tool_audit.break_glass_reviews_review_id_seq
    OWNED BY tool_audit.break_glass_reviews.review_id;
-- one closing review per call (needs_followup leaves it open)
CREATE UNIQUE INDEX break_glass_reviews_closed ON tool_audit.break_glass_reviews (call_id)
    WHERE outcome <> 'needs_followup';
CREATE INDEX break_glass_reviews_by_call ON tool_audit.break_glass_reviews (call_id, review_id);
COMMENT ON TABLE tool_audit.break_glass_reviews IS
    'Reviews of break-the-glass accesses: justified or unjustified close one, needs_followup keeps it in the queue; written only by review_break_glass()';

ALTER TABLE tool_audit.break_glass_reviews ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_read ON tool_audit.break_glass_reviews
    FOR SELECT TO tool_audit_admin USING (true);
CREATE POLICY reader_tenant ON tool_audit.break_glass_reviews
    FOR SELECT TO tool_audit_reader
    USING (((SELECT tool_audit.bound_tenants()) IS NULL
            OR tenant_id IN (SELECT pg_catalog.unnest(tool_audit.bound_tenants())))
           AND (coalesce(pg_catalog.current_setting('tool_audit.tenant', true), '') = ''
            OR tenant_id = pg_catalog.current_setting('tool_audit.tenant', true)));

-- the queue: flagged calls without a closing review, oldest first; what a
-- reader sees of it is what row-level security lets it see of both tables
CREATE VIEW tool_audit.break_glass_queue WITH (security_invoker = true) AS
SELECT t.id AS call_id,
       t.event_id,
       t.recorded_at,
       t.tenant_id,
       t.user_id,
       t.user_role,
       t.tool_name,
       t.subject_id,
       t.purpose,
       t.session_metadata ->> 'break_glass_reason' AS reason,
       r.outcome AS last_outcome,
       r.reviewed_by AS last_reviewed_by,
       r.reviewed_at AS last_reviewed_at
  FROM tool_audit.tool_calls t
  LEFT JOIN LATERAL (
        SELECT b.outcome, b.reviewed_by, b.reviewed_at
          FROM tool_audit.break_glass_reviews b
         WHERE b.call_id = t.id
         ORDER BY b.review_id DESC
         LIMIT 1) r ON true
 WHERE t.break_glass
   AND r.outcome IS DISTINCT FROM 'justified' AND r.outcome IS DISTINCT FROM 'unjustified';
COMMENT ON VIEW tool_audit.break_glass_queue IS
    'Break-the-glass accesses not yet closed by a review (never reviewed, or last reviewed needs_followup)';

CREATE FUNCTION tool_audit.review_break_glass(call_id bigint, outcome text, note text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    me text := tool_audit.acting_role();
    login text := tool_audit.approval_person();
    c tool_audit.tool_calls;
    last_review tool_audit.break_glass_reviews;
    after_row tool_audit.break_glass_reviews;
    ev_id bigint;
BEGIN
    IF NOT pg_has_role(me::name, 'tool_audit_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'only tool_audit_admin can review break-the-glass accesses'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF call_id IS NULL THEN
        RAISE EXCEPTION 'call_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF outcome IS NULL OR outcome NOT IN ('justified', 'unjustified', 'needs_followup') THEN
        RAISE EXCEPTION 'invalid value for argument "outcome": expected justified, unjustified or needs_followup'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF note IS NULL OR btrim(note) = '' THEN
        RAISE EXCEPTION 'invalid value for argument "note": must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    note := tool_audit.sanitize_text(note);
    -- one review at a time: the last review read below stays the last
    LOCK TABLE tool_audit.break_glass_reviews IN SHARE ROW EXCLUSIVE MODE;
    SELECT * INTO c FROM tool_audit.tool_calls t WHERE t.id = review_break_glass.call_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no tool call has this call_id' USING ERRCODE = 'no_data_found';
    END IF;
    IF c.break_glass IS NOT TRUE THEN
        RAISE EXCEPTION 'tool call % is not a break-the-glass access', c.id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF tool_audit.approval_same_person(login, c.recorded_by) OR me = c.recorded_by THEN
        RAISE EXCEPTION 'a break-the-glass access must be reviewed by another person than the role that recorded it'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO last_review FROM tool_audit.break_glass_reviews b
     WHERE b.call_id = c.id ORDER BY b.review_id DESC LIMIT 1;
    IF FOUND AND last_review.outcome <> 'needs_followup' THEN
        RAISE EXCEPTION 'tool call % was already reviewed (%, review %)', c.id, last_review.outcome,
                last_review.review_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'A review that closed an access is final; its event is in tool_audit.admin_events.';
    END IF;
    after_row := ROW(nextval('tool_audit.break_glass_reviews_review_id_seq'), c.id, c.event_id, c.tenant_id,
                     outcome, note, me, login, now(), NULL);
    ev_id := tool_audit.governance_event('break_glass.review',
        jsonb_build_object('call_id', c.id, 'call_event_id', c.event_id, 'outcome', outcome,
                           'before', CASE WHEN last_review.review_id IS NOT NULL THEN to_jsonb(last_review) END,
                           'after', to_jsonb(after_row) - 'admin_event_id'),
        note, c.tenant_id);
    after_row.admin_event_id := ev_id;
    INSERT INTO tool_audit.break_glass_reviews SELECT after_row.*;
    RETURN after_row.review_id;
END
$$;
COMMENT ON FUNCTION tool_audit.review_break_glass(bigint, text, text) IS
    'Records the review of a break-the-glass access (justified, unjustified: final; needs_followup: stays in the queue); tool_audit_admin only, by another person than the role that recorded it; a tool_audit.break_glass.review admin event';
