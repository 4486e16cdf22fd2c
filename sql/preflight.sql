-- preflight(): the single-side checks and bad input.  (Both sides through a
-- peer, and the cutover refusing: t/010_preflight.pl.)
CREATE SCHEMA pf;
CREATE TABLE pf.keyed (id int PRIMARY KEY, note text);
CREATE TABLE pf.nokey (id int, note text);
CREATE TABLE pf.nothing (id int PRIMARY KEY);
ALTER TABLE pf.nothing REPLICA IDENTITY NOTHING;
CREATE TABLE pf.wide (id int PRIMARY KEY, payload text);
ALTER TABLE pf.wide REPLICA IDENTITY FULL;
CREATE UNLOGGED TABLE pf.scratch (id int PRIMARY KEY);
CREATE TABLE "pf"."Mixed Case" (id int PRIMARY KEY);
CREATE MATERIALIZED VIEW pf.totals AS SELECT count(*) AS n FROM pf.keyed;
CREATE FUNCTION pf.touch() RETURNS trigger LANGUAGE plpgsql AS
    $$BEGIN NEW.note := 'touched'; RETURN NEW; END$$;
CREATE TRIGGER touch BEFORE INSERT ON pf.keyed FOR EACH ROW EXECUTE FUNCTION pf.touch();
ALTER TABLE pf.keyed ENABLE ALWAYS TRIGGER touch;
SELECT lo_create(0) > 0 AS lo_created \gset

-- No publication at all: every table is unpublished, the marker too.
SELECT severity, "check", object, detail FROM upgrade_assist.preflight()
 WHERE object LIKE 'pf.%' OR object LIKE '%ON pf.%' OR object LIKE 'upgrade_assist.%'
    OR "check" = 'large_objects'
 ORDER BY 1, 2, 3;

-- A publication of some tables that leaves out delete and truncate.
CREATE PUBLICATION pf_pub FOR TABLE pf.keyed, pf.nokey, pf.wide, upgrade_assist.marker
    WITH (publish = 'insert, update');
SELECT lo_unlink(oid) FROM pg_largeobject_metadata;
SELECT severity, "check", object, detail FROM upgrade_assist.preflight(NULL)
 WHERE object LIKE 'pf%' OR object LIKE '%ON pf.%' OR object LIKE 'upgrade_assist.%'
    OR "check" = 'large_objects'
 ORDER BY 1, 2, 3;

-- Every finding has a known severity and a hint; nothing was written.
SELECT DISTINCT severity FROM upgrade_assist.preflight() ORDER BY 1;
SELECT count(*) AS without_hint FROM upgrade_assist.preflight() WHERE hint = '';

-- Bad input.
\set VERBOSITY sqlstate
SELECT * FROM upgrade_assist.preflight('no_such_peer');
CREATE ROLE regress_pf_nobody;
GRANT USAGE ON SCHEMA upgrade_assist TO regress_pf_nobody;
SET ROLE regress_pf_nobody;
SELECT * FROM upgrade_assist.preflight();
RESET ROLE;
\set VERBOSITY default
REVOKE USAGE ON SCHEMA upgrade_assist FROM regress_pf_nobody;
DROP ROLE regress_pf_nobody;

-- cutover(accept => ...): names that are no check are refused before
-- anything starts (no attempt, no worker); valid names go on (to a peer
-- that is down here, so the checks step fails: a dry run, not recorded).
CREATE SERVER pf_down FOREIGN DATA WRAPPER upgrade_assist
    OPTIONS (host '127.0.0.1', port '1', dbname 'postgres');
CREATE USER MAPPING FOR CURRENT_USER SERVER pf_down;
\set VERBOSITY sqlstate
SELECT * FROM upgrade_assist.cutover('pf_down', accept => '{no_such_check}');
SELECT * FROM upgrade_assist.cutover('pf_down', accept => '{no_primary_key,"not published"}');
SELECT * FROM upgrade_assist.cutover('pf_down', accept => NULL);
SELECT * FROM upgrade_assist.cutover('pf_down', accept => '{no_primary_key,NULL}');
SELECT * FROM upgrade_assist.cutover('pf_down', accept => '{{no_primary_key},{unlogged_table}}');
\set VERBOSITY default
SELECT * FROM upgrade_assist.cutover('pf_down', accept => '{no_such_check}');
SELECT count(*) AS attempts FROM upgrade_assist.cutover_history;
SELECT count(*) AS running FROM upgrade_assist.cutover_progress;
SET client_min_messages = warning;
\set VERBOSITY terse
SELECT step, status FROM upgrade_assist.cutover('pf_down', dry_run => true,
    accept => '{no_primary_key,unlogged_table,no_primary_key,*}', on_abort => 'warning');
\set VERBOSITY default
RESET client_min_messages;
DROP USER MAPPING FOR CURRENT_USER SERVER pf_down;
DROP SERVER pf_down;

DROP PUBLICATION pf_pub;
DROP SCHEMA pf CASCADE;
