// Package enginebench holds BenchmarkCompare, the side-by-side measurement
// issue 16 asks for: a codi2 state update (the whole server, state and
// audit services included) against JetStream KV Update on the same kind of
// embedded server (default and sync_always), and against the raw commits
// of the embedded engines (bbolt, pebble), at 1, 5 and 20 writers, plus
// the contended claim race against kv.Create, all in one run. Each case
// reports p50 and p99 latency in µs and ops/s; the table logged at the end
// adds, when strace can attach to the test process, fsync+fdatasync calls
// per operation (syncs/op), counted after all timed runs. The package has
// no non-test code.
package enginebench
