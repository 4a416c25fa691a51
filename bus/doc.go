// Package bus runs codi2's message bus: an embedded NATS server with
// JetStream, the three contract streams, and the client agents use to talk
// to each other.
//
// # Basics
//
// Start runs the embedded server (or, with Config.URL, connects to an
// existing NATS deployment), creates or updates the streams CODI_MSG,
// CODI_STATE and CODI_AUDIT, and returns a *Bus. Services take the
// jetstream.JetStream and *nats.Conn it exposes; nats.go is not wrapped.
//
// Agent is the agent-facing client: Send a durable message (JetStream, a
// PubAck means stored), Subscribe to the live inbox (core NATS), Receive to
// catch up through a durable consumer named after the agent, and Call and
// Serve for live request/reply on codi.rpc.
//
// With Config.Auth the embedded server runs NATS decentralized
// authentication with codi2 as the operator (see internal/auth): clients
// present credentials (Credentials), each identity gets its role's
// Permissions, and the bus's own connections use an internal identity.
//
// # Caveats
//
// A PubAck means the message was written to the stream's files before the ack
// was sent (the file store flushes in place for single-replica streams), so it
// survives kill -9 of the server. JetStream fsyncs every SyncInterval (two
// minutes by default), not per message, so a PubAck alone does not survive
// power loss: the state and audit services fsync their own store on commit and
// publish a watermark for that. Config.SyncAlways trades about 20x throughput
// for per-message fsync.
//
// Stream limits (Config.MsgMaxBytes, StateMaxBytes, AuditMaxBytes) are
// derived from the disk that holds the embedded server's data unless given
// (DiskLimits): a start never discards stored messages and never asks for
// more than the disk has; a refusal (ErrDiskLimits) names the numbers. When
// a stream's files fail a write (a full disk), nats-server keeps that stream
// unwritable: the bus reports it (StorageProblems) and reloads JetStream
// once the disk has room again.
//
// With Config.Exclusive the bus is the one instance serving the streams: it
// answers probes on subjects.ServerInstance and, on an external NATS,
// refuses to start (ErrAnotherInstance, naming the other) when another
// answers. Config.DeferListen keeps the client listener closed until
// Listen, so that a caller can put responders in place first; Close then
// closes the listener and the network clients before the in-process
// connections, so those responders answer to the end.
//
// # Goroutines
//
// The embedded server runs its own goroutines, and the bus one that watches
// for streams that cannot write; Close stops them and waits for them. With
// Config.Auth the bus also runs one goroutine that pushes revocations to
// the server; Close stops it first. Receive runs until its context is cancelled and returns only
// after its consumer has stopped. Subscriptions returned by Subscribe and
// Serve belong to the caller, who unsubscribes them.
package bus
