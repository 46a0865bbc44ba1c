-- What users write today, re-created for the benchmark (schema bench_baseline).
CREATE SCHEMA bench_baseline;

-- Supabase-style helpers: SQL functions that parse request.jwt.claims on every call.
CREATE FUNCTION bench_baseline.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid
$$;
CREATE FUNCTION bench_baseline.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                  nullif(current_setting('request.jwt.claims', true), ''))::jsonb
$$;

-- The usual PL/pgSQL limiter: a counter row per user and hour-aligned window.
CREATE TABLE bench_baseline.write_counts (
  user_id uuid NOT NULL,
  window_start timestamptz NOT NULL,
  count int NOT NULL,
  PRIMARY KEY (user_id, window_start)
);
CREATE FUNCTION bench_baseline.check_write_rate(p_user_id uuid, p_limit int, p_window_seconds int)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  v_count int;
BEGIN
  INSERT INTO bench_baseline.write_counts AS c (user_id, window_start, count)
  VALUES (p_user_id, date_trunc('hour', now()), 1)
  ON CONFLICT (user_id, window_start) DO UPDATE SET count = c.count + 1
  RETURNING c.count INTO v_count;
  RETURN v_count <= p_limit;
END $$;

-- The least any store that keeps its state in a table row pays per transaction: a bare
-- one-row UPDATE statement, no limiter logic (a ceiling in the one-transaction-per-check case;
-- the same 1,000 keys as its scripts).
CREATE TABLE bench_baseline.update_floor (user_id uuid PRIMARY KEY, count bigint NOT NULL);
INSERT INTO bench_baseline.update_floor SELECT md5(k::text)::uuid, 0 FROM generate_series(1, 1000) k;
