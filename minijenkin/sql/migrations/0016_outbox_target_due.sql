-- The dispatcher claims due deliveries target by target, so that one slow
-- or dead receiver cannot take every sending slot (mj_outbox_claim_v2).
CREATE INDEX outbox_target_due_idx ON outbox (target_id, next_attempt_at, id)
    WHERE state IN ('pending', 'delivering');
