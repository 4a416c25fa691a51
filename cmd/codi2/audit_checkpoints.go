package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/mod/sumdb/note"

	"github.com/codi2/codi2/audit"
)

// checkpointFlags are `codi2 audit verify`'s checkpoint flags.
type checkpointFlags struct {
	file string // JSON-lines records holding checkpoint events
	key  string // the verifier key: a .pub file, or its text
}

func (c *checkpointFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.file, "checkpoints", "", "JSON-lines audit records holding signed checkpoints (an export, e.g. --source codi-audit --category checkpoint); needs --key")
	fs.StringVar(&c.key, "key", "", "the checkpoint verifier key: the server's audit.key.pub file, or its text")
}

func (c *checkpointFlags) set() bool { return c.file != "" || c.key != "" }

// verifiers parses --key.
func (c *checkpointFlags) verifiers() (note.Verifiers, error) {
	if c.key == "" {
		return nil, usagef("audit verify: --checkpoints needs --key (the server's audit.key.pub)")
	}
	text := c.key
	if b, err := os.ReadFile(c.key); err == nil {
		text = string(b)
	} else if !strings.Contains(c.key, "+") {
		return nil, fmt.Errorf("audit verify: --key: %w", err)
	}
	v, err := audit.NewCheckpointVerifier(text)
	if err != nil {
		return nil, fmt.Errorf("audit verify: --key: %w", err)
	}
	return v, nil
}

// readCheckpointFile reads the verified checkpoints of a records file.
func readCheckpointFile(path string, v note.Verifiers) ([]audit.Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit verify: %w", err)
	}
	defer f.Close()
	cps, err := audit.ReadCheckpoints(f, v)
	if err != nil {
		return nil, fmt.Errorf("audit verify %s: %w", path, err)
	}
	return cps, nil
}

// verifyWithCheckpoints checks an export (--file) or the running server's
// log against the signed checkpoints of --checkpoints and, for an export,
// those the export itself holds, all verified with --key.
func verifyWithCheckpoints(ctx context.Context, c checkpointFlags, file, url, creds string, req audit.VerifyRequest, timeout time.Duration, expectHead string, stdout io.Writer) error {
	v, err := c.verifiers()
	if err != nil {
		return err
	}
	var cps []audit.Checkpoint
	if c.file != "" {
		if cps, err = readCheckpointFile(c.file, v); err != nil {
			return err
		}
	}
	var res audit.VerifyResult
	if file != "" {
		if file == "-" {
			return usagef("audit verify: --key with --file needs a file, not standard input")
		}
		own, err := readCheckpointFile(file, v)
		if err != nil {
			return err
		}
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		defer f.Close()
		if res, err = audit.VerifyExportCheckpoints(f, append(cps, own...)); err != nil {
			return fmt.Errorf("audit verify %s: %w", file, err)
		}
	} else if res, err = verifyOnlineCheckpoints(ctx, url, creds, req, timeout, cps); err != nil {
		return err
	}
	if expectHead != "" {
		res.ExpectHead(expectHead)
	}
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		return err
	}
	if !res.OK {
		return errVerifyFailed
	}
	return nil
}

// verifyOnlineCheckpoints asks the server to verify its log, then reads
// the record at each checkpoint's seq and compares its hash.
func verifyOnlineCheckpoints(ctx context.Context, url, creds string, req audit.VerifyRequest, timeout time.Duration, cps []audit.Checkpoint) (audit.VerifyResult, error) {
	res, err := verifyOnline(ctx, url, creds, req, timeout)
	if err != nil || !res.OK {
		return res, err
	}
	nc, err := nats.Connect(url, clientOptions("codi2 audit verify", creds)...)
	if err != nil {
		return res, fmt.Errorf("audit verify: connect %s: %w", url, err)
	}
	defer nc.Close()
	client, err := audit.NewClient(nc)
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The server counted the checkpoints in its log: count those of the
	// file it did not, each once.
	counted, err := logCheckpointSeqs(ctx, client)
	if err != nil {
		return res, err
	}
	checked := 0
	for _, cp := range cps {
		if cp.Seq < res.FromSeq || cp.Seq > res.ToSeq {
			continue
		}
		page, err := client.Query(ctx, audit.Query{AfterSeq: cp.Seq - 1, Limit: 1})
		if err != nil {
			return res, fmt.Errorf("audit verify: read record %d: %w", cp.Seq, err)
		}
		if len(page.Records) == 0 || page.Records[0].Seq != cp.Seq || page.Records[0].Hash != cp.Hash {
			res.OK, res.BadSeq = false, cp.Seq
			res.Reason = fmt.Sprintf("record %d does not have the hash the checkpoint signed at %s (%s): the log was rewritten",
				cp.Seq, cp.Time.Format(time.RFC3339), cp.Hash)
			return res, nil
		}
		if !counted[cp.Seq] {
			counted[cp.Seq] = true
			checked++
		}
	}
	res.Checkpoints += checked
	if res.Checkpoints == 0 {
		res.OK, res.Reason = false, "no signed checkpoint covers the log"
	}
	return res, nil
}

// logCheckpointSeqs returns the seqs the checkpoint records in the
// server's log sign (their payload's seq), which its verify counts.
func logCheckpointSeqs(ctx context.Context, client *audit.Client) (map[uint64]bool, error) {
	seqs := map[uint64]bool{}
	q := audit.Query{Source: audit.CheckpointSource, Category: audit.CheckpointCategory, Limit: audit.MaxQueryLimit}
	for {
		page, err := client.Query(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("audit verify: read the log's checkpoints: %w", err)
		}
		for _, rec := range page.Records {
			var cp struct {
				Seq uint64 `json:"seq"`
			}
			if json.Unmarshal(rec.Data, &cp) == nil {
				seqs[cp.Seq] = true
			}
		}
		if page.NextAfterSeq == 0 || len(page.Records) == 0 {
			return seqs, nil
		}
		q.AfterSeq = page.NextAfterSeq
	}
}
