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

DROP USER MAPPING FOR regress_ua_upgrader SERVER peer_ok;
REVOKE ALL ON FOREIGN SERVER peer_ok FROM regress_ua_upgrader;
REVOKE ALL ON SCHEMA upgrade_assist FROM regress_ua_nobody, regress_ua_upgrader;
REVOKE ALL ON FUNCTION upgrade_assist.emit_marker(text, text) FROM regress_ua_upgrader;
REVOKE ALL ON FUNCTION upgrade_assist.round_trip(text, interval) FROM regress_ua_upgrader;
DROP ROLE regress_ua_nobody, regress_ua_upgrader, regress_ua_watcher;
