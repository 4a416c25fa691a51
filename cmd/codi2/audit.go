package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/timeparse"
	"github.com/nats-io/nats.go"
)

const auditUsage = `Usage:
  codi2 audit export [--nats-url URL] [--creds FILE] [--from T] [--to T] [--source S] [--category C] [--out FILE]
      write the audit records as JSON lines, from a running server
  codi2 audit verify --file FILE [--expect-head HASH] [--checkpoints FILE --key PUB]
      check an export's hash chain offline (and against signed checkpoints)
  codi2 audit verify [--nats-url URL] [--creds FILE] [--from-seq N] [--to-seq N] [--expect-head HASH] [--checkpoints FILE --key PUB]
      ask a running server to check its log (and its records against signed checkpoints)

Times T are RFC 3339 (2026-11-26T21:00:00Z), "now", or a duration before now
("15m", "-1h", "2d"). verify exits 1 when the chain is broken, when there is
nothing to verify, or when the last record's hash is not --expect-head.
codi2 audit export -h and codi2 audit verify -h list every flag.
`

// runAudit runs `codi2 audit export|verify`.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("audit: missing subcommand\n\n%s", auditUsage)
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, auditUsage)
		return nil
	case "export":
		return runAuditExport(ctx, args[1:], stdout, stderr)
	case "verify":
		return runAuditVerify(ctx, args[1:], stdout, stderr)
	default:
		return usagef("audit: unknown subcommand %q\n\n%s", args[0], auditUsage)
	}
}

func defaultNATSURL() string { return "nats://" + bus.DefaultListen }

func runAuditExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		url, from, to, out string
		creds              string
		q                  audit.Query
		timeout            time.Duration
	)
	fs := newFlagSet("codi2 audit export", stderr)
	fs.StringVar(&url, "nats-url", defaultNATSURL(), "NATS URL of the running codi2 server")
	credsFlag(fs, &creds)
	fs.StringVar(&from, "from", "", "first time included: RFC 3339, now, or a duration before now such as 1h (default: the start of the log)")
	fs.StringVar(&to, "to", "", "end time excluded, like --from (default: the end of the log)")
	fs.StringVar(&q.Source, "source", "", "only records from this source token")
	fs.StringVar(&q.Category, "category", "", "only records of this category token")
	fs.StringVar(&out, "out", "", "write to this file instead of standard output")
	fs.DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	if err := parseWithEnv(fs, args); err != nil {
		return err
	}
	var err error
	now := time.Now()
	if q.From, err = parseTime("--from", from, now); err != nil {
		return err
	}
	if q.To, err = parseTime("--to", to, now); err != nil {
		return err
	}
	w := stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
		defer f.Close()
		w = f
	}
	nc, err := nats.Connect(url, clientOptions("codi2 audit export", creds)...)
	if err != nil {
		return fmt.Errorf("audit export: connect %s: %w", url, err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	n, err := audit.Export(ctx, nc, w, q)
	if err != nil {
		return fmt.Errorf("audit export: after %d records: %w", n, err)
	}
	if f, ok := w.(*os.File); ok && out != "" {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
	}
	fmt.Fprintf(stderr, "exported %d records\n", n)
	return nil
}

func parseTime(flag, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := timeparse.Parse(v, now)
	if err != nil {
		return time.Time{}, usagef("%s %q: want %s", flag, v, timeparse.Example)
	}
	return t, nil
}

// Errors that make `codi2 audit verify` exit 1 after printing a result
// that is not ok.
var (
	errVerifyFailed    = errors.New("audit verify: the hash chain is broken")
	errNothingToVerify = errors.New("audit verify: nothing to verify")
	errHeadMismatch    = errors.New("audit verify: the last record is not the expected head")
)

func runAuditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		file, url  string
		creds      string
		expectHead string
		req        audit.VerifyRequest
		timeout    time.Duration
		cps        checkpointFlags
	)
	fs := newFlagSet("codi2 audit verify", stderr)
	fs.StringVar(&file, "file", "", "check this JSON-lines export offline (- for standard input)")
	fs.StringVar(&url, "nats-url", defaultNATSURL(), "without --file: NATS URL of the running codi2 server")
	credsFlag(fs, &creds)
	fs.Uint64Var(&req.FromSeq, "from-seq", 0, "without --file: first seq to check (0: the oldest kept)")
	fs.Uint64Var(&req.ToSeq, "to-seq", 0, "without --file: last seq to check (0: the head)")
	fs.DurationVar(&timeout, "timeout", time.Minute, "without --file: give up after this long")
	fs.StringVar(&expectHead, "expect-head", "", "fail unless the last record checked has this hash (64 hex digits; from a checkpoint or an earlier verify): notices records missing at the end")
	cps.register(fs)
	if err := parseWithEnv(fs, args); err != nil {
		return err
	}
	if expectHead != "" && !isHash(expectHead) {
		return usagef("--expect-head %q: want a record hash, 64 lower-case hex digits", expectHead)
	}
	if cps.set() {
		return verifyWithCheckpoints(ctx, cps, file, url, creds, req, timeout, expectHead, stdout)
	}
	var (
		res audit.VerifyResult
		err error
	)
	if file != "" {
		res, err = verifyFile(file)
	} else {
		res, err = verifyOnline(ctx, url, creds, req, timeout)
	}
	if err != nil {
		return err
	}
	mismatch := false
	if expectHead != "" && res.OK {
		res.ExpectHead(expectHead)
		mismatch = !res.OK
	}
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(res); err != nil {
		return err
	}
	switch {
	case res.OK:
		return nil
	case res.Empty:
		return fmt.Errorf("%w: %s", errNothingToVerify, strings.TrimPrefix(res.Reason, "nothing to verify: "))
	case mismatch:
		return fmt.Errorf("%w: %s", errHeadMismatch, res.Reason)
	}
	return errVerifyFailed
}

// isHash reports whether s is a record hash: 64 lower-case hex digits.
func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func verifyFile(file string) (audit.VerifyResult, error) {
	r := io.Reader(os.Stdin)
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return audit.VerifyResult{}, fmt.Errorf("audit verify: %w", err)
		}
		defer f.Close()
		r = f
	}
	res, err := audit.VerifyExport(r)
	if err != nil {
		return res, fmt.Errorf("audit verify %s: %w", file, err)
	}
	return res, nil
}

func verifyOnline(ctx context.Context, url, creds string, req audit.VerifyRequest, timeout time.Duration) (audit.VerifyResult, error) {
	nc, err := nats.Connect(url, clientOptions("codi2 audit verify", creds)...)
	if err != nil {
		return audit.VerifyResult{}, fmt.Errorf("audit verify: connect %s: %w", url, err)
	}
	defer nc.Close()
	c, err := audit.NewClient(nc)
	if err != nil {
		return audit.VerifyResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := c.Verify(ctx, req)
	if err != nil {
		return res, fmt.Errorf("audit verify: %w", err)
	}
	return res, nil
}
