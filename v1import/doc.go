/*
Package v1import imports CODI v1 logs into codi2: the JSON-lines file v1's
agents appended messages, state updates and audit events to (ADR-028, "Old
Way"; modelled by internal/v1sim).

# Basics

Split reads one line of a v1 log the way v1 left it under load: a whole
event; two events joined when a newline was lost; the head of one event
torn off and spliced onto another event or fragment (v1's buffered writers
flushed 4 KiB at a time); or bytes that are not JSON at all. It returns the
complete events it finds, each with its offset, and the rest as fragments.

Importer.Import reads a file and publishes, through the public clients:
every event as the audit event codi.audit.log.<source>.v1.<ACTION> with
the original line and its file offset, every fragment as the audit event
codi.audit.log.<source>.v1.unparseable with its file offset and its bytes
kept exactly (base64), and every state update (TASK_ASSIGN, STATUS_UPDATE)
as a merge operation on task/<task>. Each audit event carries the
Nats-Msg-Id v1-<file id>-<offset>, where the file id is derived from the
file's first non-blank newline-terminated line (FileID; a file without
one imports nothing yet). Audit events travel up to 256 per bulk message
(audit.Bulk: one CODI_AUDIT message, one record per event) and state
updates up to 63 per multi-record command (each operation its own event
and audit record), whole lines at a time, so that the services handle a
few messages per thousand lines instead of one or two per line.

A second import of the same file (also a copy, or the file grown since)
publishes nothing twice: the checkpoint record v1-import/<file id> in the
state store says how far an import got (offset, written every
CheckpointLines once every publish before it has its PubAck) and how far
its state updates are applied (state_offset, moved by the last operation
of every update command, in that command's transaction, so a re-run after
a crash sends none of them again, however late); the audit log drops a
source's repeated ids for ever. Both offsets come with the SHA-256 of the
file's bytes before them, checked on a re-run (ErrNotSameFile).

No line stops an import: a piece whose audit event would not fit in a
message (Config.MaxPayload, the connection's) is kept as its length,
SHA-256 and head (Summary.Oversized). No update is dropped silently: one
the state service would refuse (its id, its size) is counted as refused
with its offset and reason; a large one is sent alone and its outcome
awaited; a command refused unforeseen is found from the checkpoint's
revision (Summary.Refused, RefusedAt, RefusedCommands). An interrupted
import returns ErrInterrupted naming its checkpoint.

# Caveats

Events whose halves were spliced into valid JSON (one event's head with
another's tail) cannot be told from real ones: they are imported as they
read. A final line without its newline that is not a complete event may
still be being written: it is left for the next import, and the checkpoint
stays before it. TASK_ACK and other actions are audit events only: replaying
v1's messages into agents' inboxes would hand them long-finished work.
*/
package v1import
