/*
Package audit keeps codi2's audit log: every event published on
codi.audit.log.<source>.<category>[.<more>…] (stream CODI_AUDIT) appended
exactly once to an append-only, hash-chained log in a kv.Store, with queries
by time, source and category, chain verification, retention and export.

# Basics

New and Run start the Service: it reads CODI_AUDIT with the durable pull
consumer codi-audit, appends deliveries in batches (one kv.Update each) and
acks only after the commit. After each commit it publishes the watermark
{"stream_seq":N,"seq":M} on codi.audit.committed. The NATS micro service
codi-audit answers codi.audit.query, codi.audit.verify and codi.audit.status.

Client is what an agent or tool uses: Log publishes an event (a PubAck means
stored in the stream), LogAndWait also waits for the watermark (committed to
the store, which survives power loss), and Query, Verify and Status ask the
service. Export and VerifyExport write and check JSON-lines exports.

Batches form by group commit: the writer commits whatever has arrived as soon
as nothing more is waiting, so events that arrive during a commit make up the
next batch and batches grow with the load (Config.MaxBatchWait can add a
wait).

# Records

A record is one JSON object:

	{"seq":1,"time":"2026-11-26T21:00:00.123456789Z","subject":"codi.audit.log.agent-1.file.write",
	 "source":"agent-1","category":"file","msg_id":"…","data":{"path":"README.md"},
	 "prev":"000…000","hash":"…"}

seq is dense from 1 and never reused, even after retention. time is when
JetStream stored the event; should the server's clock step backwards, a
record takes its predecessor's time instead, so time never decreases along
the log and time order is seq order. msg_id is the Nats-Msg-Id, when the
event had one. A payload that is UTF-8 JSON is embedded in data compacted
(insignificant whitespace removed, nothing else changed); any other payload,
including an empty one, is kept byte-exact as "encoding":"base64" and data
the base64 string. An event whose subject the contract does not allow (no
category, a token over 256 bytes or with a non-canonical %XX escape) is kept,
since the stream acknowledged it, with a "flags" member naming the problem
(FlagNoCategory and its siblings) and counted in Status.Flagged. The README
defines the bytes the hash covers, so that anyone can re-verify an export in
a few lines of any language.

Queries and verify requests are read strictly (unknown or duplicate members
are a 400); query times may be relative to now and lie in any year; a query
may read newest first. A verify that finds no record to check reports
Empty, never OK.

# Indexes

Queries by time, source and category read posting lists: one index per
value (all records, each source, each category, each source and category
pair), each a run of blocks keyed by their first (time, seq) entry, whose
value holds the further entries as varint deltas. A commit writes one block
per index value it touches, so an event costs its commit one record key,
not one key per index; a query reads the blocks that hold what it returns
and at most one more at each end. Retention removes a block once every
record in it is gone. The README's store layout gives the bytes.

# Exactly once

The batch transaction writes the records, their index blocks, the chain
head and the last applied CODI_AUDIT sequence together. A redelivered event
at or below that sequence is acked and skipped, so a crash between commit
and ack duplicates nothing; an event whose Nats-Msg-Id its source (the
subject's 4th token) already used in the log is acked and skipped too, so a
producer that republishes long after JetStream's duplicate window (the state
service, with Nats-Msg-Id state-<generation>-<seq>) is recorded once, and
no source can make the log drop another's events by reusing their ids.

A hole in the delivered sequence (a delivery the client lost) is filled by
reading the message from the stream before anything after it is applied, so
no stored event is skipped. Sequences the stream no longer holds (purged,
deleted by sequence, aged out before the log read them) are logged at error
and recorded in the log itself, in their place, as one event per range
(source codi-audit, category lost, payload Lost), in the transaction that
moves the watermark past them.

# Goroutines and retries

Run owns one writer goroutine (itself) that batches, commits, acks and runs
retention in between, so removals are ordered with appends. The consumer
callback and the micro handlers run on nats.go's goroutines; Run stops both
and waits for running handlers before it returns. The store transaction
functions compute everything from the transaction and have no outside
effects: acks, watermarks, retention events and logs come after the commit.
A failed commit is retried with backoff, unacked, until it succeeds or Run
stops; JetStream redelivers what was not acked.

# Caveats

A record longer than one kv value (100 kB) is split over several keys; an
event of up to 4 MiB is accepted, and Run refuses a CODI_AUDIT stream that
allows larger messages. A query reply holds whole records up to the
server's max payload; a record larger than that comes in parts, which the
Client joins. Verify reads the log in bounded read transactions, so it may
run on a log of any size while the writer appends.
*/
package audit
