// Package bench measures codi2 against the targets of its design document
// (ADR-028, section 7) and against CODI v1 in the same run: the engine of
// `codi2 bench`.
//
// # Basics
//
// Run takes a Config (zero fields take defaults sized to finish in well under
// a minute on two cores), starts an embedded codi2 wired as `codi2 serve`
// wires it, or uses the one behind Config.NATSURL, and measures over TCP with
// nats.go, as agents do: message one-way and rpc round trip, state
// publish-to-committed and reads, audit publish-to-committed under a fixed
// offered load and at saturation, time-range queries on a log of
// Config.QueryLogSize records, restart-to-ready, and events lost end to end.
// It then runs the v1 model of internal/v1sim on real files. The Report holds
// one Metric per row with exact percentiles, the design target, pass or fail,
// the reason for a miss and the v1 equivalents with their speed-ups; Table
// and JSON render it.
//
// # Caveats
//
// The numbers are the machine's: the server, both services and the bench
// share its CPUs and disk, so other work on it shows in the tails (the
// Report's Machine records the load average and an fsync probe). A run
// against Config.NATSURL writes into that server for good, so it needs
// Config.AllowWrites. Everything it writes is marked as bench traffic: agent
// ids bench-<run id>-<role>, audit source bench-<run id> (and the codi-state
// audit records of kind bench-task), Nats-Msg-Ids bench-<run id>-..., state
// records of kind bench-task with ids bench-<run id>-<n>; its messages are
// purged at the end. Restart-to-ready needs the embedded server and is
// skipped with NATSURL.
//
// # Goroutines
//
// Run starts the embedded server and the measurement goroutines itself and
// returns only after every one of them has stopped and every connection is
// closed. It is safe for concurrent use with different data directories.
package bench
