-- Peers are foreign servers of the upgrade_assist wrapper.
CREATE SERVER peer_ok FOREIGN DATA WRAPPER upgrade_assist
    OPTIONS (host '127.0.0.1', port '1', dbname 'app', connect_timeout '5');
CREATE USER MAPPING FOR CURRENT_USER SERVER peer_ok
    OPTIONS (user 'upgrader', password 'secret');

-- Unknown or misplaced options are rejected with a clear error.  (The hint
-- lists the options this libpq knows, which differ between versions.)
\set VERBOSITY terse
CREATE SERVER peer_bad FOREIGN DATA WRAPPER upgrade_assist
    OPTIONS (host 'x', colour 'blue');
CREATE SERVER peer_bad FOREIGN DATA WRAPPER upgrade_assist
    OPTIONS (host 'x', password 'not here');
CREATE SERVER peer_bad FOREIGN DATA WRAPPER upgrade_assist
    OPTIONS (host 'x', options '-c search_path=evil');
CREATE SERVER peer_bad FOREIGN DATA WRAPPER upgrade_assist
    OPTIONS (connect_timeout 'soon');
CREATE SERVER peer_bad FOREIGN DATA WRAPPER upgrade_assist
    OPTIONS (connect_timeout '0');
ALTER SERVER peer_ok OPTIONS (ADD user 'upgrader');
CREATE USER MAPPING FOR PUBLIC SERVER peer_ok OPTIONS (host 'elsewhere');
\set VERBOSITY default
ALTER FOREIGN DATA WRAPPER upgrade_assist OPTIONS (ADD host 'x');
CREATE SERVER peer_bad FOREIGN DATA WRAPPER upgrade_assist
    OPTIONS (connect_timeout '0');
SELECT count(*) AS bad_servers FROM pg_foreign_server WHERE srvname = 'peer_bad';

-- Bad peer arguments: the right SQLSTATE, nothing written.
\set VERBOSITY sqlstate
SELECT upgrade_assist.round_trip(NULL);
SELECT upgrade_assist.round_trip('no_such_peer');
SELECT upgrade_assist.wait_for_marker('no_such_peer', 1);
SELECT upgrade_assist.wait_for_marker('peer_ok', NULL);
SELECT upgrade_assist.wait_for_marker('peer_ok', 0);
SELECT upgrade_assist.round_trip('peer_ok', '-1s');
SELECT upgrade_assist.round_trip('peer_ok', NULL);
SELECT upgrade_assist.round_trip('peer_ok', '100 years');
-- A server of another wrapper is not a peer.
CREATE FOREIGN DATA WRAPPER other_fdw;
CREATE SERVER not_a_peer FOREIGN DATA WRAPPER other_fdw;
SELECT upgrade_assist.round_trip('not_a_peer');
-- No user mapping for this server.
CREATE SERVER peer_nomap FOREIGN DATA WRAPPER upgrade_assist OPTIONS (host '127.0.0.1');
SELECT upgrade_assist.round_trip('peer_nomap');
-- Nothing listens on port 1: a connection error of class 08, no marker.
SELECT upgrade_assist.round_trip('peer_ok', '5s');
SELECT count(*) AS markers FROM upgrade_assist.marker;
\set VERBOSITY default
-- The message names the peer and carries libpq's reason, never the password.
DO $$
BEGIN
  PERFORM upgrade_assist.round_trip('peer_ok', '5s');
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'sqlstate % names peer: %, shows password: %', SQLSTATE,
    SQLERRM LIKE '%peer_ok%', SQLERRM LIKE '%secret%';
END $$;

DROP SERVER not_a_peer;
DROP FOREIGN DATA WRAPPER other_fdw;
DROP SERVER peer_nomap;
