// Package v1sim is a measured model of CODI v1, kept so that codi2 can be
// benchmarked against the system it replaces in the same run.
//
// CODI v1 pushed agent messages, task state and audit events through one
// shared JSON-lines log file (ADR-028, "Everything → Log File"). Five Claude
// sessions appended to it at once; the log interleaved their lines, about 1%
// of events were lost, and reading the current state of a task meant scanning
// the whole log. This package reproduces those three properties with real
// files and real system calls, and measures them; it never injects loss.
//
// # Writing
//
// RunWrites starts Config.Writers goroutines that stand for v1's writer
// processes. Each opens the same file with its own O_APPEND descriptor and
// appends Config.EventsPerWriter events in v1's message shapes: TASK_ASSIGN,
// TASK_ACK and STATUS_UPDATE, the last carrying the task's new status. The
// writers share the tasks ADR-000..ADR-099 on purpose: in v1 the last status
// line of a task depended on how the writers happened to interleave.
//
// Mode selects how a writer appends:
//
//   - Buffered is the v1 bug. Each writer wraps its descriptor in its own
//     4 KiB bufio.Writer, which issues one write(2) whenever the buffer fills.
//     On Linux each O_APPEND write(2) to a regular file lands whole, so bytes
//     are never lost, but a flush boundary usually falls inside a line: the
//     first half of that line is appended with one flush and the second half
//     with the writer's next, and any other writer's flush that lands in
//     between is spliced into the middle. Most joined lines are unparseable
//     and the events in them are lost to every reader; the rest (four in ten
//     in our runs) are valid JSON carrying one event's head and another's
//     tail (Integrity.Spliced), wrong data that every reader accepts. A
//     single writer never tears (its halves stay adjacent), and a line
//     longer than the buffer bypasses it in one write(2) and lands whole.
//     The latency of an event is the bufio Write call; the event reaches the
//     file only at the next flush and is never fsynced, so it is not durable
//     when Write returns.
//   - LockedFsync is the correct but slow fix: each event is appended under
//     an exclusive flock(2) on the writer's own descriptor (v1's writers were
//     separate processes, so a mutex would not have been enough) with one
//     write(2) and an fsync(2). The latency of an event includes waiting for
//     the lock, and the event is durable when the append returns.
//
// # Reading
//
// Verify reads the log back and counts lines, parsed and corrupted lines, and
// lost and duplicated events. ScanState answers "what is the status of task
// T?" and QueryTimeRange answers "which events happened between A and B?" the
// only way v1 could: by parsing every line of the log.
//
// # Caveats
//
// Writers are goroutines with separate descriptors, not processes; the file
// system sees the same kind of write(2) calls either way, but how often a
// foreign flush lands inside a torn line depends on scheduling, so counts
// vary from run to run and with GOMAXPROCS. With GOMAXPROCS=1 writers
// interleave only when the scheduler preempts one, and a run may tear
// nothing; v1's processes ran in parallel. LockedFsync needs flock(2) and
// returns ErrUnsupported on platforms without it.
package v1sim
