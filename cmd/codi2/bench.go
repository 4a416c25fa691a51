package main

import (
	"context"
	"io"

	"github.com/codi2/codi2/internal/bench"
)

// parseBench turns `codi2 bench` flags (or CODI2_* variables) into a
// bench.Config, whether to print JSON, and the log settings.
func parseBench(args []string, stderr io.Writer) (cfg bench.Config, asJSON bool, level, format string, err error) {
	fs := newFlagSet("codi2 bench", stderr)
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "measure the codi2 serving this NATS URL instead of an embedded one (restart is skipped)")
	fs.BoolVar(&cfg.AllowWrites, "allow-writes", false, "with --nats-url: accept that the run writes bench-marked audit events and state into that server for good")
	fs.StringVar(&cfg.Store, "store", "", "the embedded server's store: bolt (the default) or pebble (see serve --store)")
	fs.StringVar(&cfg.DataDir, "data", "", "data directory for the embedded server and the v1 logs (default: a temporary directory, removed)")
	fs.IntVar(&cfg.Messages, "messages", bench.DefaultMessages, "one-way messages and rpc calls to time")
	fs.IntVar(&cfg.StateCommands, "state-commands", bench.DefaultStateCommands, "state commands, over all writers")
	fs.IntVar(&cfg.StateReads, "state-reads", bench.DefaultStateReads, "state get requests, over all writers")
	fs.IntVar(&cfg.AuditEvents, "audit-events", bench.DefaultAuditEvents, "audit events published at --audit-rate")
	fs.IntVar(&cfg.AuditRate, "audit-rate", bench.DefaultAuditRate, "offered audit load in events per second, over all writers")
	fs.IntVar(&cfg.QueryLogSize, "query-log-size", bench.DefaultQueryLogSize, "audit log size for the time-range queries (try 1000000)")
	fs.IntVar(&cfg.Queries, "queries", bench.DefaultQueries, "time-range queries to time")
	fs.IntVar(&cfg.QueryWindow, "query-window", bench.DefaultQueryWindow, "events spanned by a query's time range, and its page limit")
	fs.IntVar(&cfg.Restarts, "restarts", bench.DefaultRestarts, "restarts of the embedded server to time")
	fs.IntVar(&cfg.Writers, "writers", bench.DefaultWriters, "concurrency: agents writing state, audit publishers, v1 writers")
	fs.IntVar(&cfg.V1FsyncEvents, "v1-fsync-events", bench.DefaultV1FsyncEvents, "events of v1's flock + fsync run")
	fs.IntVar(&cfg.V1Queries, "v1-queries", bench.DefaultV1Queries, "v1 time-range queries and state scans (each parses the whole log)")
	fs.IntVar(&cfg.PayloadBytes, "payload-bytes", bench.DefaultPayloadBytes, "size of message and audit payloads and of v1 lines' padding")
	fs.DurationVar(&cfg.OpTimeout, "op-timeout", bench.DefaultOpTimeout, "bound on each request and each wait for a commit")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON instead of tables")
	fs.StringVar(&level, "log-level", "warn", "log level of the embedded server: trace, debug, info, warn, error")
	fs.StringVar(&format, "log-format", "auto", "log format: auto (console on a terminal), json, console")
	err = parseWithEnv(fs, args)
	return cfg, asJSON, level, format, err
}

// runBench runs `codi2 bench`: progress and logs on stderr, the report on
// stdout.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, asJSON, level, format, err := parseBench(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, level, format)
	if err != nil {
		return usageError{err}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err} // before bench.Run starts a server
	}
	cfg.Progress = stderr
	rep, err := bench.Run(ctx, cfg, log)
	if err != nil {
		return err
	}
	if asJSON {
		return rep.JSON(stdout)
	}
	return rep.Table(stdout)
}
