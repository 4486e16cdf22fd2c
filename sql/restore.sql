-- Recreating the extension with restored markers: numbering continues above
-- the restored rows of this origin, never into them.
SET client_min_messages = warning;
DROP EXTENSION upgrade_assist CASCADE;
RESET client_min_messages;
CREATE EXTENSION upgrade_assist;
INSERT INTO upgrade_assist.marker (origin, seq, kind, written_at, written_lsn)
SELECT system_identifier, 1000000, 'restored', now(), '0/0' FROM pg_control_system();
-- Another origin's high numbers do not matter.
INSERT INTO upgrade_assist.marker VALUES (42, 5000000, 'peer', now(), '0/0', NULL);
SELECT seq FROM upgrade_assist.emit_marker('after_restore');
SELECT seq FROM upgrade_assist.emit_marker('after_restore');
