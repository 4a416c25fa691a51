package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/internal/timeparse"
	"github.com/codi2/codi2/subjects"
	"github.com/spf13/cobra"
)

// Logged is log's --json output.
type Logged struct {
	Subject   string `json:"subject"`
	Stream    string `json:"stream"`
	StreamSeq uint64 `json:"stream_seq"`
	Committed bool   `json:"committed"`
}

func (e *env) logCmd() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "log CATEGORY [DATA|-]",
		Short: "record an audit event from this agent",
		Long: `Record an audit event from --agent in CATEGORY (a token, e.g. decision).
DATA is the payload, JSON or any text; "-" reads it from standard input.
--wait returns once the event is committed to the hash-chained log.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			me, err := e.me()
			if err != nil {
				return err
			}
			subj, err := subjects.AuditLog(me, args[0])
			if err != nil {
				return usageError{fmt.Errorf("category %q: %w", args[0], err)}
			}
			data, err := e.readData(args, 1)
			if err != nil {
				return err
			}
			c, err := e.auditClient()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := e.ctx(cmd)
			defer cancel()
			log := c.Log
			if wait {
				log = c.LogAndWait
			}
			ack, err := log(ctx, me, args[0], data)
			if err != nil {
				return err
			}
			l := Logged{Subject: subj, Stream: ack.Stream, StreamSeq: ack.Sequence, Committed: wait}
			text := fmt.Sprintf("logged %s (%s seq %d)", subj, ack.Stream, ack.Sequence)
			if wait {
				text += ", committed"
			}
			return e.out.emit(l, text)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the event is committed to the log")
	return cmd
}

func (e *env) historyCmd() *cobra.Command {
	var (
		since, from, to, source, category string
		limit                             int
	)
	cmd := &cobra.Command{
		Use:   "history",
		Short: "print audit records, oldest first",
		Long: `Print audit records in log order. --since 1h is --from an hour ago; times
are RFC 3339, "now", or a duration before now. --source and --category select
exact tokens; --limit stops after N records (default 100).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit <= 0 {
				return usageError{fmt.Errorf("--limit must be positive, got %d", limit)}
			}
			q := audit.Query{Source: source, Category: category}
			var err error
			if since != "" && from != "" {
				return usageError{fmt.Errorf("--since and --from both say where to start: give one")}
			}
			for _, t := range []struct {
				flag, v string
				dst     *time.Time
			}{{"since", since, &q.From}, {"from", from, &q.From}, {"to", to, &q.To}} {
				if t.v == "" {
					continue
				}
				if *t.dst, err = timeparse.Parse(t.v, e.io.Now()); err != nil {
					return usageError{fmt.Errorf("--%s: %w", t.flag, err)}
				}
			}
			c, err := e.auditClient()
			if err != nil {
				return err
			}
			defer c.Close()
			n := 0
			for {
				q.Limit = min(max(limit-n, 1), audit.MaxQueryLimit)
				ctx, cancel := e.ctx(cmd)
				page, err := c.Query(ctx, q)
				cancel()
				if err != nil {
					return err
				}
				for i, r := range page.Records {
					if err := e.out.emit(json.RawMessage(r.Raw), HistoryText(r)); err != nil {
						return err
					}
					if n++; n >= limit {
						if i < len(page.Records)-1 || page.NextAfterSeq != 0 {
							// Standard error: --json output stays records only.
							fmt.Fprintf(e.io.Err, "codi2: stopped at --limit %d; more records follow (raise --limit, or --from a later time)\n", limit)
						}
						return nil
					}
				}
				if page.NextAfterSeq == 0 {
					return nil
				}
				q.AfterSeq = page.NextAfterSeq
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "records since (1h: the last hour)")
	f.StringVar(&from, "from", "", "records at or after: "+timeparse.Example)
	f.StringVar(&to, "to", "", "records before this time")
	f.StringVar(&source, "source", "", "only this source (an agent id, codi-state, ...)")
	f.StringVar(&category, "category", "", "only this category")
	f.IntVar(&limit, "limit", 100, "at most N records")
	return cmd
}

// HistoryText is an audit record in one line: seq, time, source, category
// and the payload: JSON as it is, a payload that is not JSON (stored
// base64, the record's "encoding") as a quoted string when it is UTF-8
// text, else as base64:"...".
func HistoryText(r audit.Record) string {
	data := string(r.Data)
	if r.Encoding != "" {
		data = r.Encoding + ":" + data
		if raw, err := r.Payload(); err == nil && r.Encoding == audit.EncodingBase64 && utf8.Valid(raw) {
			data = strconv.Quote(string(raw))
		}
	}
	return fmt.Sprintf("#%d %s %s %s %s", r.Seq, r.Time.UTC().Format(time.RFC3339Nano), r.Source, r.Category, data)
}

// Status is status's --json output.
type Status struct {
	Server string        `json:"server"`
	State  *StateStatus  `json:"state"`
	Audit  *audit.Status `json:"audit"`
	Errors []string      `json:"errors,omitempty"`
}

// StateStatus is the state service's part of Status.
type StateStatus struct {
	StreamSeq uint64 `json:"stream_seq"`
}

func (e *env) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "the server's watermarks and the audit log's size and head",
		Long: `Print both services' commit watermarks and the audit log's size and head hash.
Exit 5 when a service does not answer (what did answer is still printed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sc, err := e.stateClient(false)
			if err != nil {
				return err
			}
			ac, err := e.auditClient()
			if err != nil {
				return err
			}
			defer ac.Close()
			st := Status{Server: e.nc.ConnectedUrlRedacted()}
			ctx, cancel := e.ctx(cmd)
			defer cancel()
			text := "server " + st.Server
			if seq, err := sc.Status(ctx); err != nil {
				st.Errors = append(st.Errors, "state: "+err.Error())
				text += "\nstate: " + err.Error()
			} else {
				st.State = &StateStatus{StreamSeq: seq}
				text += fmt.Sprintf("\nstate: applied and durable through CODI_STATE seq %d", seq)
			}
			if as, err := ac.Status(ctx); err != nil {
				st.Errors = append(st.Errors, "audit: "+err.Error())
				text += "\naudit: " + err.Error()
			} else {
				st.Audit = &as
				text += fmt.Sprintf("\naudit: %d records (seq %d-%d, %d bytes), committed through CODI_AUDIT seq %d, head %s",
					as.Count, as.FirstSeq, as.Seq, as.Bytes, as.StreamSeq, as.Head)
			}
			if err := e.out.emit(st, text); err != nil {
				return err
			}
			if len(st.Errors) > 0 {
				return unreachableError{fmt.Errorf("the server answered only in part: %v", st.Errors)}
			}
			return nil
		},
	}
}
