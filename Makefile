# upgrade_assist: build with PGXS against any PostgreSQL 13 or later.
#
#   make PG_CONFIG=/path/to/pg_config
#   make install PG_CONFIG=...
#   make installcheck PG_CONFIG=...     # regress + isolation + TAP, own temp servers
#
# Add COPT=-Werror to turn the warnings below into errors (scripts/test does).

MODULE_big = upgrade_assist
OBJS = \
	src/upgrade_assist.o \
	src/util.o \
	src/remote.o \
	src/marker.o \
	src/marker_writer.o \
	src/heartbeat.o \
	src/heartbeat_worker.o \
	src/fence.o \
	src/fence_hooks.o \
	src/fence_drain.o \
	src/sequences.o \
	src/sequences_prepared.o \
	src/stats.o \
	src/stats_worker.o \
	src/stats_import.o \
	src/stats_import_worker.o \
	src/preflight.o \
	src/cutover.o \
	src/cutover_worker.o \
	src/cutover_steps.o \
	src/cutover_external.o \
	src/cutover_resolve.o \
	src/verify.o \
	src/verify_worker.o \
	src/verify_helper.o \
	src/verify_checksum.o \
	src/cutover_command.o \
	src/cutover_multidb.o

EXTENSION = upgrade_assist
DATA = upgrade_assist--1.0.sql
PGFILEDESC = "upgrade_assist - major-version upgrade helpers"

REGRESS = install peers markers privileges restore fence sequences stats stats_import preflight cutover_support cutover cutover_resolve cutover_external verify hostile
# The library must be preloaded: every pg_regress run gets its own temporary
# server with test/preload.conf.
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=$(srcdir)/test/preload.conf
ISOLATION_OPTS = --temp-instance=tmp_check_iso --temp-config=$(srcdir)/test/preload.conf
ISOLATION = concurrent_markers fence_drain
TAP_TESTS = 1

# PostgreSQL's server headers are included as system headers: they are not
# -Wextra clean (unused parameters in inline functions), our own code is.
PG_CPPFLAGS = -I$(libpq_srcdir) -I$(srcdir)/src -isystem $(includedir_server)
PG_CFLAGS = -Wall -Wextra
SHLIB_LINK_INTERNAL = $(libpq)

EXTRA_CLEAN = tmp_check_regress tmp_check_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
