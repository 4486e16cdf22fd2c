-- Hostile input to every SQL function of the extension: every function
-- with every argument NULL, then empty strings, unknown peers, negative,
-- zero and huge intervals and counts, SQL in text arguments.  Each call:
-- its SQLSTATE (or ok), and the state of the extension unchanged (ua_state()
-- before and after); no injected SQL ran (table hostile_x still exists).
-- The cases with two clusters are in t/019_hostile.pl.
SET client_min_messages = warning;
CREATE TABLE hostile_x (i integer);

-- What a bad call must not change.
CREATE FUNCTION ua_state() RETURNS text LANGUAGE sql AS $$
SELECT concat_ws(' ',
    'fenced', (SELECT fenced FROM upgrade_assist.fence_status),
    'markers', (SELECT count(*) FROM upgrade_assist.marker),
    'heartbeat', (SELECT count(*) FROM upgrade_assist.sync_status),
    'cutovers', (SELECT count(*) FROM upgrade_assist.cutover_history),
    'attempts', (SELECT count(*) FROM upgrade_assist.cutover_attempt),
    'stats_runs', (SELECT count(*) FROM upgrade_assist.stats_run),
    'imports', (SELECT count(*) FROM upgrade_assist.stats_import_run),
    'exports', (SELECT count(*) FROM upgrade_assist.stats_export_rel),
    'verify_runs', (SELECT count(*) FROM upgrade_assist.verify_run),
    'subscriptions', (SELECT count(*) FROM pg_subscription),
    'publications', (SELECT count(*) FROM pg_publication),
    'slots', (SELECT count(*) FROM pg_replication_slots),
    'x', to_regclass('public.hostile_x') IS NOT NULL)
$$;

-- Run each statement in its own subtransaction; one line per statement with
-- its SQLSTATE, or 'ok'.
CREATE FUNCTION ua_try(stmts text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    s text;
    st text;
BEGIN
    FOREACH s IN ARRAY stmts LOOP
        BEGIN
            EXECUTE s;
            st := 'ok';
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
        END;
        RETURN NEXT st || '  ' || s;
    END LOOP;
END
$$;

CREATE TEMP TABLE state_before AS SELECT ua_state() AS s;

-- 1. Every function of the extension with every argument NULL.
SELECT ua_try(array_agg(format('SELECT * FROM %s(%s)', p.oid::regproc,
                                (SELECT string_agg('NULL::' || format_type(t, NULL), ', ' ORDER BY o)
                                   FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, o)))
                        ORDER BY p.oid::regprocedure::text COLLATE "C"))
  FROM pg_proc p
 WHERE p.pronamespace = 'upgrade_assist'::regnamespace
   AND p.pronargs > 0 AND p.prorettype <> 'trigger'::regtype;
SELECT ua_state() = s AS unchanged FROM state_before;

-- 2. Empty strings, unknown peers, negative, zero and huge intervals and
-- counts.  no_peer is no foreign server: the order of the checks shows.
SELECT ua_try(ARRAY[
  $q$SELECT upgrade_assist.emit_marker('')$q$,
  $q$SELECT upgrade_assist.emit_marker(repeat('k', 64))$q$,
  $q$SELECT upgrade_assist.round_trip('')$q$,
  $q$SELECT upgrade_assist.round_trip('no such peer')$q$,
  $q$SELECT upgrade_assist.round_trip('no_peer', '-1s')$q$,
  $q$SELECT upgrade_assist.round_trip('no_peer', '0')$q$,
  $q$SELECT upgrade_assist.round_trip('no_peer', '1000000 years')$q$,
  $q$SELECT upgrade_assist.wait_for_marker('', 1)$q$,
  $q$SELECT upgrade_assist.wait_for_marker('no_peer', -1)$q$,
  $q$SELECT upgrade_assist.wait_for_marker('no_peer', 1, '-1s')$q$,
  $q$SELECT upgrade_assist.wait_for_marker('no_peer', 1, '1000000 years')$q$,
  $q$SELECT upgrade_assist.heartbeat_start('')$q$,
  $q$SELECT upgrade_assist.heartbeat_start('no such peer')$q$,
  $q$SELECT upgrade_assist.heartbeat_start('no_peer', '-1s')$q$,
  $q$SELECT upgrade_assist.heartbeat_start('no_peer', '0')$q$,
  $q$SELECT upgrade_assist.heartbeat_start('no_peer', '1000000 years')$q$,
  $q$SELECT upgrade_assist.fence('x', '-1s')$q$,
  $q$SELECT upgrade_assist.fence('x', '1000000 years')$q$,
  $q$SELECT upgrade_assist.fence('x', '1s', '-1s')$q$,
  $q$SELECT upgrade_assist.fence('x', '1s', '0')$q$,
  $q$SELECT upgrade_assist.sequence_plan('')$q$,
  $q$SELECT upgrade_assist.sequence_plan('no such peer')$q$,
  $q$SELECT upgrade_assist.sequence_plan(NULL, -1)$q$,
  $q$SELECT upgrade_assist.sync_sequences('')$q$,
  $q$SELECT upgrade_assist.sync_sequences(NULL, -1)$q$,
  $q$SELECT upgrade_assist.sync_sequences_given('{a}', '{b,c}', '{1}', '{t}')$q$,
  $q$SELECT upgrade_assist.sync_sequences_given('{a}', '{b}', '{1}', '{t}', -1)$q$,
  $q$SELECT upgrade_assist.sync_sequences_given('{"''); DROP TABLE hostile_x; --"}', '{"''); DROP TABLE hostile_x; --"}', '{1}', '{t}')$q$,
  $q$SELECT upgrade_assist.sync_sequences_prepared(-1, 0, '{1}', '{t}')$q$,
  $q$SELECT upgrade_assist.rebuild_stats('{}')$q$,
  $q$SELECT upgrade_assist.rebuild_stats('{0}')$q$,
  $q$SELECT upgrade_assist.rebuild_stats(jobs => 0)$q$,
  $q$SELECT upgrade_assist.rebuild_stats(jobs => -1)$q$,
  $q$SELECT upgrade_assist.rebuild_stats(jobs => 1000000)$q$,
  $q$SELECT upgrade_assist.import_stats('')$q$,
  $q$SELECT upgrade_assist.import_stats('no such peer')$q$,
  $q$SELECT upgrade_assist.import_stats(NULL, 0)$q$,
  $q$SELECT upgrade_assist.import_stats(NULL, -1)$q$,
  $q$SELECT upgrade_assist.preflight('')$q$,
  $q$SELECT upgrade_assist.preflight('no such peer')$q$,
  $q$SELECT upgrade_assist.preflight('no_peer')$q$,
  $q$SELECT upgrade_assist.verify('')$q$,
  $q$SELECT upgrade_assist.verify('no such peer')$q$,
  $q$SELECT upgrade_assist.verify('no_peer', chunk_rows => 0)$q$,
  $q$SELECT upgrade_assist.verify('no_peer', chunk_rows => -1)$q$,
  $q$SELECT upgrade_assist.verify('no_peer', timeout => '-1s')$q$,
  $q$SELECT upgrade_assist.verify('no_peer', '{}')$q$,
  $q$SELECT upgrade_assist.cancel_verify(-1)$q$,
  $q$SELECT upgrade_assist.cutover('')$q$,
  $q$SELECT upgrade_assist.cutover('no such peer')$q$,
  $q$SELECT upgrade_assist.cutover('no_peer', max_lag => '-1s')$q$,
  $q$SELECT upgrade_assist.cutover('no_peer', timeout => '-1s')$q$,
  $q$SELECT upgrade_assist.cutover('no_peer', timeout => '0')$q$,
  $q$SELECT upgrade_assist.cutover('no_peer', timeout => '1000000 years')$q$,
  $q$SELECT upgrade_assist.cutover('no_peer', sequence_margin => -1)$q$,
  $q$SELECT upgrade_assist.cutover('no_peer', accept => '{"no such check"}')$q$,
  $q$SELECT upgrade_assist.cutover('no_peer', on_abort => '')$q$,
  $q$SELECT upgrade_assist.cutover('no_peer', on_abort => 'x''); DROP TABLE hostile_x; --')$q$,
  $q$SELECT upgrade_assist.cutover_takeover('', 1, 1)$q$,
  $q$SELECT upgrade_assist.cutover_takeover('x"; DROP TABLE hostile_x; --', 1, 1)$q$,
  $q$SELECT upgrade_assist.cutover_attempt_outcome(-1, -1) IS NULL$q$
]);
-- The outcome question leaves its tombstone (by design: the answer stays
-- true); remove it.
DELETE FROM upgrade_assist.cutover_attempt WHERE origin = -1;
SELECT ua_state() = s AS unchanged FROM state_before;


DROP FUNCTION ua_try(text[]), ua_state();
DROP TABLE hostile_x;
