-- Nothing that writes or talks to a peer is open to PUBLIC.
SELECT p.proname,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p WHERE p.pronamespace = 'upgrade_assist'::regnamespace
 ORDER BY 1;

CREATE ROLE regress_ua_nobody;
CREATE ROLE regress_ua_upgrader;
CREATE ROLE regress_ua_watcher IN ROLE pg_monitor;
GRANT EXECUTE ON FUNCTION upgrade_assist.emit_marker(text, text) TO regress_ua_upgrader;
GRANT EXECUTE ON FUNCTION upgrade_assist.round_trip(text, interval) TO regress_ua_upgrader;
GRANT USAGE ON SCHEMA upgrade_assist TO regress_ua_nobody, regress_ua_upgrader;

\set VERBOSITY sqlstate
SET ROLE regress_ua_nobody;
SELECT upgrade_assist.emit_marker();
SELECT upgrade_assist.round_trip('peer_ok');
SELECT count(*) FROM upgrade_assist.marker;
INSERT INTO upgrade_assist.marker VALUES (1, 1, 'forged', now(), '0/0', NULL);
RESET ROLE;

-- A granted role writes markers through the function only.
SET ROLE regress_ua_upgrader;
SELECT kind FROM upgrade_assist.emit_marker('granted');
INSERT INTO upgrade_assist.marker VALUES (1, 1, 'forged', now(), '0/0', NULL);
-- No USAGE on the peer's server.
SELECT upgrade_assist.round_trip('peer_ok');
RESET ROLE;

-- With USAGE and a mapping without password, a non-superuser is refused
-- before any connection is tried.
GRANT USAGE ON FOREIGN SERVER peer_ok TO regress_ua_upgrader;
CREATE USER MAPPING FOR regress_ua_upgrader SERVER peer_ok OPTIONS (user 'upgrader');
SET ROLE regress_ua_upgrader;
SELECT upgrade_assist.round_trip('peer_ok');
\set VERBOSITY default
SELECT upgrade_assist.round_trip('peer_ok');
RESET ROLE;

-- Monitoring roles read markers.
SET ROLE regress_ua_watcher;
SELECT count(*) > 0 AS can_read FROM upgrade_assist.marker;
RESET ROLE;

-- Every SECURITY DEFINER function pins its search_path (none listed).
SELECT p.oid::regprocedure AS definer_without_search_path
  FROM pg_proc p
 WHERE p.pronamespace = 'upgrade_assist'::regnamespace AND p.prosecdef
   AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')
 ORDER BY 1;
-- The SECURITY DEFINER functions and their settings.
SELECT p.oid::regprocedure AS definer, p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'upgrade_assist'::regnamespace AND p.prosecdef
 ORDER BY 1;

-- What a monitoring role (the documented prometheus: pg_monitor) may do:
-- read every view and table granted to pg_monitor, execute the *_rows
-- functions behind the views and verify_result, and nothing else; every
-- other function of the extension refuses it (42501) before doing anything,
-- and so does a write to every table.  Its transactions are read-write here,
-- so that the privileges, not read-only mode, are what refuses.
CREATE ROLE regress_ua_prometheus IN ROLE pg_monitor;
CREATE FUNCTION priv_try(stmts text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
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
GRANT EXECUTE ON FUNCTION priv_try(text[]) TO regress_ua_prometheus;
CREATE TEMP TABLE priv_calls AS
SELECT array_agg(format('SELECT * FROM %s(%s)', p.oid::regproc,
                        (SELECT string_agg('NULL::' || format_type(t, NULL), ', ' ORDER BY o)
                           FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, o)))
                 ORDER BY p.oid::regprocedure::text COLLATE "C") AS calls
  FROM pg_proc p
 WHERE p.pronamespace = 'upgrade_assist'::regnamespace
   AND p.prorettype <> 'trigger'::regtype;
CREATE TEMP TABLE priv_rels AS
SELECT c.oid::regclass AS rel, c.relkind
  FROM pg_class c
 WHERE c.relnamespace = 'upgrade_assist'::regnamespace AND c.relkind IN ('r', 'v');
GRANT SELECT ON priv_calls, priv_rels TO regress_ua_prometheus;
CREATE TEMP TABLE priv_before AS
SELECT (SELECT count(*) FROM upgrade_assist.marker) AS markers,
       (SELECT fenced FROM upgrade_assist.fence_status) AS fenced;
SET SESSION AUTHORIZATION regress_ua_prometheus;
-- (A STRICT function called with constant NULLs is folded to NULL by the
-- planner, so it never runs and its EXECUTE privilege is never checked:
-- the 'ok' lines of fdw_validator, fence_note_takeover and
-- cutover_attempt_lock_key below.)
SELECT priv_try(calls) FROM priv_calls;
SELECT priv_try(array_agg(format('SELECT count(*) FROM %s', rel) ORDER BY rel::text COLLATE "C")) FROM priv_rels;
SELECT priv_try(array_agg(format('DELETE FROM %s', rel) ORDER BY rel::text COLLATE "C"))
  FROM priv_rels WHERE relkind = 'r';
RESET SESSION AUTHORIZATION;
SELECT (SELECT count(*) FROM upgrade_assist.marker) = markers AS markers_unchanged,
       (SELECT fenced FROM upgrade_assist.fence_status) = fenced AS fence_unchanged
  FROM priv_before;

-- The documented monitoring role runs read-only transactions
-- (default_transaction_read_only = on): granted the SECURITY DEFINER
-- functions, it still cannot write through them; a role without the grant
-- cannot call them.
GRANT EXECUTE ON FUNCTION upgrade_assist.emit_marker(text, text),
    upgrade_assist.rebuild_stats(integer[], integer, boolean),
    upgrade_assist.cancel_stats_rebuild() TO regress_ua_prometheus;
SET SESSION AUTHORIZATION regress_ua_prometheus;
SET default_transaction_read_only = on;
SELECT priv_try(ARRAY[
  $q$SELECT upgrade_assist.emit_marker('read-only')$q$,
  $q$SELECT upgrade_assist.rebuild_stats()$q$,
  $q$SELECT upgrade_assist.cancel_stats_rebuild()$q$]);
RESET default_transaction_read_only;
RESET SESSION AUTHORIZATION;
SET ROLE regress_ua_nobody;
SELECT priv_try(ARRAY[
  $q$SELECT upgrade_assist.emit_marker('nobody')$q$,
  $q$SELECT upgrade_assist.rebuild_stats()$q$,
  $q$SELECT upgrade_assist.cancel_stats_rebuild()$q$]);
RESET ROLE;
SELECT (SELECT count(*) FROM upgrade_assist.marker) = markers AS markers_unchanged,
       (SELECT count(*) FROM upgrade_assist.stats_run) AS stats_runs
  FROM priv_before;
REVOKE ALL ON FUNCTION upgrade_assist.emit_marker(text, text),
    upgrade_assist.rebuild_stats(integer[], integer, boolean),
    upgrade_assist.cancel_stats_rebuild() FROM regress_ua_prometheus;
DROP FUNCTION priv_try(text[]);
DROP TABLE priv_calls, priv_rels, priv_before;
DROP ROLE regress_ua_prometheus;

DROP USER MAPPING FOR regress_ua_upgrader SERVER peer_ok;
REVOKE ALL ON FOREIGN SERVER peer_ok FROM regress_ua_upgrader;
REVOKE ALL ON SCHEMA upgrade_assist FROM regress_ua_nobody, regress_ua_upgrader;
REVOKE ALL ON FUNCTION upgrade_assist.emit_marker(text, text) FROM regress_ua_upgrader;
REVOKE ALL ON FUNCTION upgrade_assist.round_trip(text, interval) FROM regress_ua_upgrader;
DROP ROLE regress_ua_nobody, regress_ua_upgrader, regress_ua_watcher;
