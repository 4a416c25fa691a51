/*
Package state is codi2's state service: it turns the commands agents publish
on CODI_STATE into records in the transactional store, answers reads as the
NATS micro service codi-state, and carries leases (task claims, file
reservations, presence) that expire on their own.

# Basics

An agent publishes a command on codi.state.cmd.<kind>.<id>.<actor> (JSON:
op put, merge or delete, optional expect_rev and ttl_ms). JetStream stores it
and answers with a PubAck. The Service consumes the stream with the durable
pull consumer codi-state, applies commands in stream order, many per store
transaction, and after each commit publishes one event per command on
codi.state.evt.<kind>.<id> (applied with the record, or rejected with reason
conflict or bad_request), the watermark on codi.state.committed, and an audit
event on CODI_AUDIT. A command whose subject does not parse names no record:
its rejection goes to codi.state.evt.bad_request with the raw subject.
Commands and requests are decoded strictly (internal/strictjson: UTF-8, at
most 64 levels, no duplicate or unknown members), and ids are tokens with one
spelling (subjects.Unescape). A writer holding PubAck sequence N reads its own
write with a get whose min_seq is N, waiting at most its wait_ms (default
Config.GetWait, 1s).

Client is the agent-side API: Apply sends a command and waits for its event;
Claim, Refresh and Release are the lease idioms (expect_rev 0 plus ttl, merge
with expect_rev plus ttl, delete with expect_rev); Get, List and Status read.
ListWhere lists with filters (updated_after, updated_before, where, held:
ListQuery), served from a time index and a field index that every record
write keeps in its own transaction (index.go, filter.go); PublishAsync sends
commands without waiting, for bulk writers.

# Exactly once

The effects of a batch, the last applied stream sequence
("meta", "applied", "CODI_STATE") and the batch's audit events (the outbox)
commit in one transaction; acks, events and publishes happen only after the
commit. Each command is acked on its own (AckExplicit), right after the
transaction that applied it committed. A command at or below the applied
sequence is acked and skipped, so a redelivery (a crash between commit and
ack, a consumer reset) never applies twice. Commands are applied strictly in
stream order: a hole in the consumer's delivery sequence (a message handed to
another puller, or lost with a connection) restarts the consumer right after
the applied sequence, and so does a consumer found ahead of the store at
start. Audit events leave the outbox only after their PubAck, and carry
Nats-Msg-Id state-<generation>-<seq> (generation.go), so a crash between commit and publish neither loses
nor duplicates them. The watermark also records when JetStream stored the
last applied command: a stream that hands its sequence numbers out again
(deleted and created anew, or its unsynced tail lost in a power loss) is
noticed at start, and its commands stored after that time are applied
rather than taken for redeliveries.

Revisions are fencing tokens: rev grows by one per applied change of a
kind/id, including deletes and expiries, and a deleted or expired record keeps
a tombstone with its last rev, so that a re-created record continues from it.
For expect_rev, a tombstone does not exist (current rev 0).

# Goroutines

Run does all writing on its own goroutine, the single writer, so expiries are
ordered with commands. Leases that end together expire a slice at a time
(Config.MaxExpiryBatch), with the waiting commands applied between slices. Request handlers run on the NATS connection's
goroutines; a get that waits for min_seq waits on a goroutine owned by the
Service. Run returns only after the consumer is stopped, every handler has
answered and every wait has ended.

# Caveats

Run one Service per stream and consumer: two services sharing the
codi-state consumer would each see holes in their delivery and keep
restarting it. Replicas need commands partitioned by key, each partition with
its own consumer and store keyspace (a later wave).

Events and the watermark are core NATS: at most once. A client that missed
its event reads the outcome with Get and min_seq. Tombstones are kept forever
(one small value per deleted id). Expiry uses the JetStream stored time of
commands and the wall clock for idle sweeps, so clocks of the NATS server and
the service host should agree.
*/
package state
